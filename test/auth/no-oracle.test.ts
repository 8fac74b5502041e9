/**
 * docs/SECURITY.md 11.4 (rule 14): what SCRAM shows for a login — salt, iteration count, salt
 * length — must not tell a login that exists from one that does not. A real user's salt stays the
 * same under every spelling the store folds together (case, outer white space) and changes under
 * those it does not; an unknown login's fake salt must do exactly the same, with the store's own
 * iteration count and salt length. Checked on the real stores (SQLite, passwd-file) and through
 * AuthBackends, which routes a login to its domain's store.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { ScramSha256Server } from "../../src/sasl/scram-sha-256.js";
import { deriveScramSha256 } from "../../src/sasl/secrets.js";
import type { CredentialVerifier } from "../../src/sasl/types.js";
import { PasswdFileStore } from "../../src/auth/passwd-file.js";
import { AuthBackends } from "../../src/auth/backends.js";
import { loginInFirstMessage } from "../../src/auth/dovecot-mechanism.js";
import { withStore } from "./store-helpers.js";

const KEY = randomBytes(32);

/** The server-first's salt (base64) and iteration count for a client-first naming `login`. */
async function scramParams(verifier: CredentialVerifier, login: string): Promise<{ s: string; i: string; saltBytes: number }> {
  const server = new ScramSha256Server({ verifier, hostname: "mail.example.org", authzidAllowed: () => false, fakeSaltKey: KEY });
  const step = await server.start(Buffer.from(`n,,n=${login.replace(/=/g, "=3D").replace(/,/g, "=2C")},r=nonce`, "utf8"));
  assert.equal(step.kind, "challenge", login);
  const text = step.kind === "challenge" ? step.data.toString() : "";
  const s = /,s=([^,]+)/.exec(text)![1]!;
  return { s, i: /,i=(\d+)/.exec(text)![1]!, saltBytes: Buffer.from(s, "base64").length };
}

/**
 * For a known and an unknown login: the spellings the store folds give one salt each, the one it
 * does not fold a different salt, for both alike; iteration count and salt length are the same.
 */
async function assertNoOracle(verifier: CredentialVerifier, known: string, unknown: string, expected: { i: string; saltBytes: number }) {
  const folded = (login: string) => {
    const [local, domain] = login.split("@") as [string, string];
    return [login, login.toUpperCase(), `${local}@${domain.toUpperCase()}`, `  ${login} `, `${local.toUpperCase()}@${domain}   `];
  };
  for (const login of [known, unknown]) {
    const params = await Promise.all(folded(login).map((spelling) => scramParams(verifier, spelling)));
    assert.deepEqual(new Set(params.map((p) => p.s)).size, 1, `${login}: one salt for every spelling the store folds together`);
    for (const p of params) assert.deepEqual({ i: p.i, saltBytes: p.saltBytes }, expected, login);
    assert.equal((await scramParams(verifier, login)).s, params[0]!.s, `${login}: the same salt every time`);
  }
  // Non-ASCII case is not folded by any of our stores (NOCASE, passwd-file: ASCII only): a real
  // user's "Ö" spelling is another (unknown) login, and so is an unknown user's.
  const other = (login: string) => `Ö${login}`;
  const lower = (login: string) => `ö${login}`;
  for (const login of [known, unknown]) {
    assert.notEqual((await scramParams(verifier, other(login))).s, (await scramParams(verifier, lower(login))).s, login);
  }
}

test("SQLite store: an unknown login's SCRAM salt follows the store's folding; its iteration count is the store's", () =>
  withStore(
    async (store) => {
      await store.addUser("alice@example.org", "alice pw");
      await store.addUser("öalice@example.org", "alice pw");
      await assertNoOracle(store, "alice@example.org", "nobody@example.org", { i: "8192", saltBytes: 16 });
      // Through AuthBackends (what the server uses): the same, routed by the login's domain.
      const backends = new AuthBackends({
        defaultBackend: { backend: "sqlite", service: "smtp", timeoutMs: 1000 },
        domains: {},
        sqlite: store,
        localDomains: ["example.org"],
        digestMd5: false,
      });
      await assertNoOracle(backends.verifier, "alice@example.org", "nobody@example.org", { i: "8192", saltBytes: 16 });
    },
    { scramIterations: 8192 },
  ));

test("passwd-file: an unknown login's SCRAM salt follows the file's folding; iteration count and salt length are its users'", async () => {
  const dir = await mkdtemp(join(tmpdir(), "postern-oracle-"));
  const path = join(dir, "users");
  // A {SCRAM-SHA-256} entry with 6000 iterations and a 20-byte salt (Dovecot's field order).
  const scram = (password: string) => {
    const c = deriveScramSha256(password, randomBytes(20), 6000);
    return `{SCRAM-SHA-256}6000,${c.salt.toString("base64")},${c.storedKey.toString("base64")},${c.serverKey.toString("base64")}`;
  };
  await writeFile(path, [`alice@example.net:${scram("alice pw")}::::::`, `öalice@example.net:${scram("alice pw")}::::::`].join("\n") + "\n");
  const store = new PasswdFileStore({ path });
  try {
    await assertNoOracle(store, "alice@example.net", "nobody@example.net", { i: "6000", saltBytes: 20 });
  } finally {
    store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("Dovecot pass-through learns the login from the first client message of each mechanism it can read (11.8)", () => {
  const b = (s: string) => Buffer.from(s, "utf8");
  assert.equal(loginInFirstMessage("PLAIN", b("\0john@example.org\0pw")), "john@example.org");
  assert.equal(loginInFirstMessage("PLAIN", b("admin@example.org\0john@example.org\0pw")), "john@example.org", "the authcid, never the authzid");
  assert.equal(loginInFirstMessage("LOGIN", b("john@example.org")), "john@example.org");
  assert.equal(loginInFirstMessage("SCRAM-SHA-256", b("n,,n=john=2C@example.org,r=abc")), "john,@example.org");
  assert.equal(loginInFirstMessage("SCRAM-SHA-1", b("n,,n=john@example.org,r=abc")), "john@example.org");
  assert.equal(loginInFirstMessage("CRAM-MD5", b("john smith@example.org 0123456789abcdef0123456789abcdef")), "john smith@example.org");
  assert.equal(loginInFirstMessage("DIGEST-MD5", b('username="john@example.org",realm="x",nonce="n"')), "john@example.org");
  assert.equal(loginInFirstMessage("PLAIN", b("no nul at all")), undefined);
  assert.equal(loginInFirstMessage("XOAUTH2", b("user=john\x01auth=Bearer x\x01\x01")), "john");
  assert.equal(loginInFirstMessage("OAUTHBEARER", b("n,a=john@example.org,\x01auth=Bearer x\x01\x01")), "john@example.org");
  assert.equal(loginInFirstMessage("GSSAPI", b("\x60\x82")), undefined, "others: Dovecot's user= tells");
});
