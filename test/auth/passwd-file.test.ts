/**
 * Dovecot passwd-file backend: every scheme from real `doveadm pw` output, CRAM-MD5 secrets,
 * unknown users, and reload on change without a restart.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PasswdFileStore } from "../../src/auth/passwd-file.js";
import { SUPPORTED_SCHEMES } from "../../src/auth/dovecot-schemes.js";
import { md5Crypt } from "../../src/auth/crypt-md5.js";
import { CramMd5Client, CramMd5Server } from "../../src/sasl/cram-md5.js";
import { ScramSha256Server } from "../../src/sasl/scram-sha-256.js";
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
    assert.ok(store.credentials().includes("cram-md5"));
    for (const [user, ok] of [
      ["cram@example.org", true],
      ["plain@example.org", true],
      ["crypt@example.org", false],
    ] as const) {
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

/** A log that keeps every line, for the assertions below. */
function recordingLog(): {
  lines: LogLine[];
  log: { info(f: Record<string, unknown>, msg: string): void; warn(f: Record<string, unknown>, msg: string): void };
} {
  const lines: LogLine[] = [];
  return {
    lines,
    log: {
      info: (f, msg) => void lines.push({ ...f, level: "info", msg }),
      warn: (f, msg) => void lines.push({ ...f, level: "warn", msg }),
    },
  };
}

test("every skipped line is a WARN with its line number and the reason (never the hash)", async () => {
  const { dir, path } = await tempFile([
    "# users", // 1
    `good@example.org:{PLAIN}${PASSWORD}`, // 2
    `old@example.org:${doveadmPw("PLAIN-MD5", PASSWORD)}:1000:1000::/home/old::`, // 3
    "no-colon-here", // 4
    `:{PLAIN}${PASSWORD}`, // 5
    `Good@example.org:{PLAIN}other`, // 6: the same user again
    "yes@example.org:$y$j9T$abcdefgh$0123456789abcdef", // 7
    "bare@example.org:c2VjcmV0", // 8
  ]);
  const { lines, log } = recordingLog();
  const store = new PasswdFileStore({ path, log });
  try {
    const skipped = lines.filter((l) => l.event === "passwd-file-line-skipped");
    assert.deepEqual(
      skipped.map((l) => [l.line, l.reason]),
      [
        [3, `unsupported password scheme {PLAIN-MD5} (supported: ${SUPPORTED_SCHEMES.join(", ")})`],
        [4, "malformed line: no ':' (expected user:{SCHEME}hash:uid:gid:gecos:home:shell:extra)"],
        [5, "malformed line: no user name before the first ':'"],
        [6, "duplicate user Good@example.org: line 2 is used"],
        [7, "unsupported crypt prefix $y$ (no {SCHEME} given)"],
        [8, "password field has no {SCHEME} prefix (Dovecot's default_pass_scheme is not assumed)"],
      ],
    );
    for (const l of skipped) {
      assert.equal(l.level, "warn");
      assert.equal(l.msg, `passwd-file ${path} line ${l.line} skipped: ${l.reason}`);
    }
    assert.doesNotMatch(JSON.stringify(lines), /c2VjcmV0|0123456789abcdef|j9T/, "no password data in the log");
    assert.deepEqual(lines.find((l) => l.event === "passwd-file-loaded")?.skippedLines, [3, 4, 5, 6, 7, 8]);
    assert.equal((await store.verifyPassword("good@example.org", PASSWORD)).ok, true);
  } finally {
    store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("MD5-CRYPT ($1$, older Dovecot setups) verifies: doveadm's {MD5-CRYPT} and {MD5}, and a bare $1$ from openssl", async () => {
  const opensslMd5 = execFileSync("openssl", ["passwd", "-1", "-salt", "abcdefgh", PASSWORD], { encoding: "utf8" }).trim();
  assert.equal(md5Crypt(PASSWORD, opensslMd5), opensslMd5, "the same string as openssl passwd -1");
  assert.equal(md5Crypt("secret", "$1$abcdefgh$"), "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1");
  assert.equal(md5Crypt("", "$1$$"), "$1$$qRPK7m23GJusamGpoGLby/", "empty password and salt (glibc crypt)");
  const { dir, path } = await tempFile([
    `a@example.org:${doveadmPw("MD5-CRYPT", PASSWORD)}`,
    `b@example.org:${doveadmPw("MD5", PASSWORD)}`,
    `c@example.org:${opensslMd5}`,
    `d@example.org:{MD5-CRYPT}$1$short$`,
  ]);
  const { lines, log } = recordingLog();
  const store = new PasswdFileStore({ path, log });
  try {
    assert.deepEqual(
      lines.filter((l) => l.event === "passwd-file-line-skipped"),
      [],
    );
    for (const user of ["a@example.org", "b@example.org", "c@example.org"]) {
      assert.deepEqual(await store.verifyPassword(user, PASSWORD), { ok: true, user }, user);
      assert.deepEqual(await store.verifyPassword(user, PASSWORD.toUpperCase()), { ok: false, reason: "bad-password" }, user);
    }
    const truncated = await store.verifyPassword("d@example.org", PASSWORD);
    assert.ok(!truncated.ok && truncated.reason === "backend-error", "a truncated hash is reported, never accepted");
  } finally {
    store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("a login that fails because the stored hash cannot serve the mechanism is logged as such, not as an unknown user", async () => {
  const { dir, path } = await tempFile([
    `crypt@example.org:${doveadmPw("SHA512-CRYPT", PASSWORD)}`,
    `scram@example.org:${doveadmPw("SCRAM-SHA-256", PASSWORD)}`,
    `cram@example.org:${doveadmPw("CRAM-MD5", PASSWORD)}`,
  ]);
  const { lines, log } = recordingLog();
  const store = new PasswdFileStore({ path, log });
  const opts = { verifier: store, hostname: "mail.example.org", authzidAllowed: () => false, fakeSaltKey: Buffer.alloc(32) };
  try {
    const server = new CramMd5Server(opts);
    const challenge = (await server.start(null)) as { data: Buffer };
    const result = await server.step(new CramMd5Client({ username: "crypt@example.org", password: PASSWORD }).respond(challenge.data));
    assert.deepEqual(result, { kind: "failure", reason: "no-usable-secret" }, "the auth-failure log line's reason");
    const unknown = new CramMd5Server(opts);
    const unknownChallenge = (await unknown.start(null)) as { data: Buffer };
    const unknownResult = await unknown.step(new CramMd5Client({ username: "nobody@example.org", password: PASSWORD }).respond(unknownChallenge.data));
    assert.deepEqual(unknownResult, { kind: "failure", reason: "unknown-user" });
    // SCRAM fakes the exchange to its end for both, then names the real reason.
    for (const [user, reason] of [
      ["cram@example.org", "no-usable-secret"],
      ["nobody@example.org", "unknown-user"],
    ] as const) {
      const scram = new ScramSha256Server(opts);
      const first = await scram.start(Buffer.from(`n,,n=${user},r=clientnonce`));
      assert.equal(first.kind, "challenge", user);
      const serverFirst = (first as { data: Buffer }).data.toString();
      const nonce = /r=([^,]+)/.exec(serverFirst)![1]!;
      const final = await scram.step(Buffer.from(`c=biws,r=${nonce},p=${Buffer.alloc(32).toString("base64")}`));
      assert.deepEqual(final, { kind: "failure", reason }, user);
    }
    const noSecret = lines.filter((l) => l.event === "auth-no-usable-secret");
    assert.deepEqual(
      noSecret.map((l) => [l.level, l.user, l.mechanism, l.scheme, l.line]),
      [
        ["warn", "crypt@example.org", "CRAM-MD5", "SHA512-CRYPT", 1],
        ["warn", "cram@example.org", "SCRAM-SHA-256", "CRAM-MD5", 3],
      ],
    );
    assert.equal(
      noSecret[0]!.msg,
      "crypt@example.org has a SHA512-CRYPT password, which CRAM-MD5 cannot use (it needs {CRAM-MD5} or {PLAIN}); the client gets 535 as for a wrong password: PLAIN/LOGIN work",
    );

    assert.equal(await store.scramSha256("cram@example.org"), null);
    assert.deepEqual(
      lines
        .filter((l) => l.event === "auth-no-usable-secret")
        .map((l) => [l.user, l.mechanism, l.scheme])
        .at(-1),
      ["cram@example.org", "SCRAM-SHA-256", "CRAM-MD5"],
    );
    // An unknown user is just unknown: nothing to tell the admin about its scheme.
    const before = lines.length;
    assert.equal(await store.cramMd5("nobody@example.org"), null);
    assert.equal(lines.length, before);
  } finally {
    store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
