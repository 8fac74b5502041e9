#!/usr/bin/env node
// fsync, scrypt and PBKDF2 all run on libuv's pool (4 threads by default): give the queue room.
// Set before the first import so the pool is created with it.
process.env.UV_THREADPOOL_SIZE ??= "16";
// The compiled CLI (npm ci / npm install run the TypeScript build through "prepare").
await import("../dist/src/cli/main.js");
