/** `postern user add|del|passwd|list`: manage the SQLite user store. */
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import { SqliteUserStore } from "../auth/sqlite-store.js";
import { resolveConfig } from "./config-source.js";
import { readPassword } from "./secret-input.js";

function openStore(configPath: string | undefined): SqliteUserStore {
  const { config } = resolveConfig(configPath);
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  return new SqliteUserStore({ path: join(config.dataDir, "users.sqlite"), hostname: config.hostname });
}

async function newPassword(fromStdin: boolean): Promise<string> {
  const password = await readPassword({ fromStdin, prompt: "Password: " });
  if (password.length === 0) throw new Error("empty password refused");
  return password;
}

export async function userAdd(address: string, opts: { config?: string; passwordStdin?: boolean; sender?: string[] }): Promise<void> {
  const password = await newPassword(opts.passwordStdin === true);
  const store = openStore(opts.config);
  try {
    await store.addUser(address, password, { senders: opts.sender ?? [] });
    process.stdout.write(`added ${address}\n`);
  } finally {
    store.close();
  }
}

export async function userPasswd(address: string, opts: { config?: string; passwordStdin?: boolean }): Promise<void> {
  const password = await newPassword(opts.passwordStdin === true);
  const store = openStore(opts.config);
  try {
    await store.setPassword(address, password);
    process.stdout.write(`password changed for ${address}\n`);
  } finally {
    store.close();
  }
}

export async function userDel(address: string, opts: { config?: string }): Promise<void> {
  const store = openStore(opts.config);
  try {
    if (!store.deleteUser(address)) throw new Error(`no such user: ${address}`);
    process.stdout.write(`deleted ${address}\n`);
  } finally {
    store.close();
  }
}

export async function userList(opts: { config?: string; json?: boolean }): Promise<void> {
  const store = openStore(opts.config);
  try {
    const users = store.listUsers();
    if (opts.json) process.stdout.write(JSON.stringify(users, null, 2) + "\n");
    else
      for (const u of users)
        process.stdout.write(`${u.address}${u.disabled ? " (disabled)" : ""}${u.senders.length ? `  senders: ${u.senders.join(", ")}` : ""}\n`);
  } finally {
    store.close();
  }
}
