/**
 * Dovecot passwd-file backend: every scheme from real `doveadm pw` output, CRAM-MD5 secrets,
 * unknown users, and reload on change without a restart.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PasswdFileStore } from "../../src/auth/passwd-file.js";
import { SUPPORTED_SCHEMES } from "../../src/auth/dovecot-schemes.js";
import { CramMd5Client, CramMd5Server } from "../../src/sasl/cram-md5.js";
import { doveadmPw } from "./helpers/daemons.js";
import type { LogLine } from "../e2e/helpers/postern.js";

const PASSWORD = "correct horse 42";

async function tempFile(lines: string[]): Promise<{ dir: string; path: string }> {
  const dir = await mkdtemp(join(tmpdir(), "postern-passwd-"));
  const path = join(dir, "users");
  await writeFile(path, lines.join("\n") + "\n");
  return { dir, path };
}

test("every supported scheme, as doveadm pw writes it, verifies the right password and refuses a wrong one", async () => {
  const lines = SUPPORTED_SCHEMES.map((s) => `${s.toLowerCase()}@example.org:${doveadmPw(s, PASSWORD)}:1000:1000::/home/x::`);
  const { dir, path } = await tempFile(["# users", "", ...lines]);
  const store = new PasswdFileStore({ path });
  try {
    assert.equal(store.size, SUPPORTED_SCHEMES.length);
    for (const s of SUPPORTED_SCHEMES) {
      const user = `${s.toLowerCase()}@example.org`;
      assert.deepEqual(await store.verifyPassword(user, PASSWORD), { ok: true, user }, s);
      assert.deepEqual(await store.verifyPassword(user, PASSWORD + "x"), { ok: false, reason: "bad-password" }, s);
    }
    assert.deepEqual(await store.verifyPassword("nobody@example.org", PASSWORD), { ok: false, reason: "unknown-user" });
    assert.deepEqual(await store.verifyPassword("plain@example.org", ""), { ok: false, reason: "unknown-user" });
    assert.ok(await store.lookupUser("PLAIN@Example.org"), "lookups fold ASCII case");
  } finally {
    store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("CRAM-MD5 logins work from a stored {CRAM-MD5} secret (and from {PLAIN}), not from one-way hashes", async () => {
  const { dir, path } = await tempFile([
    `cram@example.org:${doveadmPw("CRAM-MD5", PASSWORD)}`,
    `plain@example.org:{PLAIN}${PASSWORD}`,
    `crypt@example.org:${doveadmPw("SHA512-CRYPT", PASSWORD)}`,
  ]);
  const store = new PasswdFileStore({ path });
  try {
    assert.ok(store.supportedMechanisms().includes("CRAM-MD5"));
    for (const [user, ok] of [["cram@example.org", true], ["plain@example.org", true], ["crypt@example.org", false]] as const) {
      const server = new CramMd5Server({ verifier: store, hostname: "mail.example.org", authzidAllowed: () => false, fakeSaltKey: Buffer.alloc(32) });
      const client = new CramMd5Client({ username: user, password: PASSWORD });
      const challenge = await server.start(null);
      assert.equal(challenge.kind, "challenge");
      const result = await server.step(client.respond((challenge as { data: Buffer }).data));
      assert.equal(result.kind, ok ? "success" : "failure", user);
    }
  } finally {
    store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("reloads when the file is replaced (fs.watch), keeps the old users when the new file is unreadable", async () => {
  const { dir, path } = await tempFile([`old@example.org:{PLAIN}${PASSWORD}`]);
  const logs: LogLine[] = [];
  let loaded: () => void = () => undefined;
  const log = {
    info: (f: Record<string, unknown>) => {
      logs.push(f);
      if (f.event === "passwd-file-loaded") loaded();
    },
    warn: (f: Record<string, unknown>) => void logs.push(f),
  };
  const store = new PasswdFileStore({ path, log });
  try {
    assert.equal((await store.verifyPassword("old@example.org", PASSWORD)).ok, true);
    const reloaded = new Promise<void>((resolve) => (loaded = resolve));
    await writeFile(join(dir, "users.new"), `new@example.org:${doveadmPw("SHA256-CRYPT", PASSWORD)}\n`);
    await rename(join(dir, "users.new"), path); // how editors and deploy tools replace files
    // The watcher noticed, no login needed (the timer only bounds the wait and keeps the loop alive).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([reloaded, new Promise((_, fail) => (timer = setTimeout(() => fail(new Error("no reload")), 10_000)))]);
    clearTimeout(timer);
    assert.equal((await store.verifyPassword("new@example.org", PASSWORD)).ok, true);
    assert.deepEqual(await store.verifyPassword("old@example.org", PASSWORD), { ok: false, reason: "unknown-user" });
    // Appending in place (same inode) is noticed by the stat check at the next lookup as well.
    await writeFile(path, `new@example.org:{PLAIN}${PASSWORD}\nthird@example.org:{PLAIN}${PASSWORD}\n`);
    assert.equal((await store.verifyPassword("third@example.org", PASSWORD)).ok, true);
    assert.ok(logs.filter((l) => l.event === "passwd-file-loaded").length >= 3);
  } finally {
    store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
