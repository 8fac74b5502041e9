#!/usr/bin/env node
// The compiled CLI (npm install / npm ci run the TypeScript build through "prepare").
import "../dist/src/cli/main.js";
