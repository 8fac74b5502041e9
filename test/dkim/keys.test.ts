/** The DKIM key store: files and modes, DNS record text, states and rotation, the server's reload. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createPublicKey } from "node:crypto";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KeyStore, activateKey, dkimKeysDir, generateKey, listKeys, publishedKeys, zoneLine } from "../../src/dkim/keys.js";
import { parseZoneLine } from "./helpers/verifiers.js";

async function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "postern-dkim-keys-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("keys are stored as <domain>/<selector>.key (0600) with a metadata file; the folder is 0700", () =>
  withDir(async (dir) => {
    generateKey(dir, "Example.ORG", "s1", "ed25519", { state: "active" });
    generateKey(dir, "example.org", "s2", "rsa", { state: "active" });
    for (const f of ["s1.key", "s1.json", "s2.key", "s2.json"]) assert.equal((await stat(join(dir, "example.org", f))).mode & 0o777, 0o600, f);
    assert.equal((await stat(join(dir, "example.org"))).mode & 0o777, 0o700);
    const keys = listKeys(dir, "example.org");
    assert.deepEqual(
      keys.map((k) => [k.selector, k.algorithm, k.state]),
      [
        ["s1", "ed25519", "active"],
        ["s2", "rsa", "active"],
      ],
    );
    // An existing selector is never overwritten.
    assert.throws(() => generateKey(dir, "example.org", "s1", "ed25519", { state: "active" }), /EEXIST/);
    // Names that could leave the store are refused.
    assert.throws(() => generateKey(dir, "../etc", "s1", "rsa", { state: "active" }), /not a domain/);
    assert.throws(() => generateKey(dir, "example.org", "../x", "rsa", { state: "active" }), /not a selector/);
  }));

test("DNS records: Ed25519 p= is the raw 32-byte key (RFC 8463), RSA p= the SPKI; values over 255 octets split into quoted strings", () =>
  withDir((dir) => {
    const ed = generateKey(dir, "example.org", "e", "ed25519", { state: "active" });
    const rsa = generateKey(dir, "example.org", "r", "rsa", { state: "active" });
    assert.match(ed.publicKeyDnsValue, /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
    const edLine = zoneLine("example.org", "e", ed.publicKeyDnsValue);
    assert.equal(edLine, `e._domainkey.example.org. IN TXT "${ed.publicKeyDnsValue}"`);
    const rsaLine = zoneLine("example.org", "r", rsa.publicKeyDnsValue);
    assert.match(rsaLine, /^r\._domainkey\.example\.org\. IN TXT "v=DKIM1; k=rsa; p=[^"]{200,}" "[^"]+"$/);
    const parsed = parseZoneLine(rsaLine);
    assert.equal(parsed.value, rsa.publicKeyDnsValue);
    const spki = Buffer.from(/p=(.*)$/.exec(parsed.value)![1]!, "base64");
    assert.equal(createPublicKey({ key: spki, format: "der", type: "spki" }).asymmetricKeyDetails?.modulusLength, 2048);
  }));

test("activate: the new key signs, the old key of its algorithm retires and stays published for the grace period", () =>
  withDir((dir) => {
    const t0 = new Date("2026-01-01T00:00:00Z");
    generateKey(dir, "example.org", "old-e", "ed25519", { state: "active", now: t0 });
    generateKey(dir, "example.org", "old-r", "rsa", { state: "active", now: t0 });
    generateKey(dir, "example.org", "new-e", "ed25519", { state: "pending", now: t0 });
    const store = new KeyStore(dir);
    assert.deepEqual(
      store.signingKeys("example.org").map((k) => k.selector),
      ["old-e", "old-r"],
    );
    const t1 = new Date("2026-02-01T00:00:00Z");
    const retired = activateKey(dir, "example.org", "new-e", t1);
    assert.deepEqual(
      retired.map((k) => k.selector),
      ["old-e"],
    );
    // The running server's store sees the change at the next message (the folder's mtime moved).
    assert.deepEqual(
      store.signingKeys("example.org").map((k) => k.selector),
      ["new-e", "old-r"],
    );
    const keys = listKeys(dir, "example.org");
    assert.equal(keys.find((k) => k.selector === "old-e")?.state, "retired");
    const day = 86_400_000;
    assert.deepEqual(
      publishedKeys(keys, 7, new Date(t1.getTime() + 6 * day)).map((k) => k.selector),
      ["new-e", "old-e", "old-r"],
    );
    assert.deepEqual(
      publishedKeys(keys, 7, new Date(t1.getTime() + 8 * day)).map((k) => k.selector),
      ["new-e", "old-r"],
    );
  }));

test("the signer's store: no folder, no keys; odd domain spellings never reach the file system", () =>
  withDir((dir) => {
    const store = new KeyStore(dir);
    assert.deepEqual(store.signingKeys("example.org"), []);
    assert.deepEqual(store.signingKeys("../../etc"), []);
    assert.equal(dkimKeysDir({ dataDir: "/var/lib/postern" }), "/var/lib/postern/dkim");
    assert.equal(dkimKeysDir({ dataDir: "/var/lib/postern", dkim: { keysDir: "keys" } }), "/var/lib/postern/keys");
    assert.equal(dkimKeysDir({ dataDir: "/var/lib/postern", dkim: { keysDir: "/etc/postern/dkim" } }), "/etc/postern/dkim");
  }));
