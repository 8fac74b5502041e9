import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import Database from "better-sqlite3";
import { CredentialCache } from "../../src/auth/cache.js";
import { DUMMY_PASSWORD_HASH } from "../../src/auth/password-hash.js";
import { generateSecretsFor, normalizeAddress, SqliteUserStore } from "../../src/auth/sqlite-store.js";
import { deriveCramMd5Secret, deriveDigestMd5Ha1, deriveScramSha256 } from "../../src/sasl/secrets.js";
import { mechanismsFor } from "../../src/sasl/registry.js";
import { HOSTNAME, withStore } from "./store-helpers.js";

const PW = "Tr0ub4dor&3-plaintext-marker";

test("add, duplicate, lookup, list, delete", () =>
  withStore(async (store) => {
    await store.addUser("tim@example.org", PW, { senders: ["@Example.NET", "Alias@Example.org"] });
    await assert.rejects(store.addUser("TIM@EXAMPLE.ORG", "other"), /already exists/);
    await store.addUser("ann@example.org", "x");
    assert.deepEqual(await store.lookupUser("Tim@Example.org"), {
      address: "tim@example.org",
      senders: ["@example.net", "Alias@example.org"],
      disabled: false,
    });
    assert.equal(await store.lookupUser("nobody@example.org"), null);
    assert.deepEqual(
      store.listUsers().map((u) => u.address),
      ["ann@example.org", "tim@example.org"],
    );
    assert.equal(store.deleteUser("ANN@example.org"), true);
    assert.equal(store.deleteUser("ann@example.org"), false);
    assert.deepEqual(
      store.listUsers().map((u) => u.address),
      ["tim@example.org"],
    );
  }));

test("addresses: trimmed, domain lower-cased, local part kept but matched case-insensitively; full address required", () =>
  withStore(async (store) => {
    assert.equal(normalizeAddress("  John.Doe@Example.ORG "), "John.Doe@example.org");
    for (const bad of ["john", "@example.org", "john@", "a@b@c", "jo hn@example.org", "john\n@example.org", '"j"@example.org']) {
      assert.equal(normalizeAddress(bad), null, bad);
    }
    await store.addUser(" John.Doe@Example.ORG ", PW);
    assert.equal((await store.lookupUser("john.doe@example.org"))?.address, "John.Doe@example.org");
    assert.deepEqual(await store.verifyPassword("JOHN.DOE@example.org", PW), { ok: true, user: "John.Doe@example.org" });
    assert.deepEqual(await store.verifyPassword("John.Doe", PW), { ok: false, reason: "unknown-user" }, "bare local part is not a login");
    await assert.rejects(store.addUser("john", PW), /full user@domain/);
    await assert.rejects(store.addUser("x@example.org", ""), /empty password/);
    await assert.rejects(store.addUser("y@example.org", PW, { senders: ["not an address"] }), /invalid sender/);
  }));

test("verifyPassword: ok, bad-password, unknown-user, and disabled users look unknown", () =>
  withStore(async (store) => {
    await store.addUser("tim@example.org", PW);
    assert.deepEqual(await store.verifyPassword("tim@example.org", PW), { ok: true, user: "tim@example.org" });
    assert.deepEqual(await store.verifyPassword("tim@example.org", "nope"), { ok: false, reason: "bad-password" });
    assert.deepEqual(await store.verifyPassword("who@example.org", PW), { ok: false, reason: "unknown-user" });
    store.setDisabled("tim@example.org", true);
    assert.deepEqual(await store.verifyPassword("tim@example.org", PW), { ok: false, reason: "unknown-user" });
    assert.equal((await store.lookupUser("tim@example.org"))?.disabled, true);
    assert.equal(await store.scramSha256("tim@example.org"), null);
    assert.equal(await store.cramMd5("tim@example.org"), null);
    store.setDisabled("tim@example.org", false);
    assert.equal((await store.verifyPassword("tim@example.org", PW)).ok, true);
  }));

test("unknown and disabled users are checked against the dummy hash (SECURITY rule 14)", () =>
  withStore(async (store, { hasher }) => {
    await store.verifyPassword("ghost@example.org", PW);
    await store.verifyPassword("not-an-address", PW);
    assert.deepEqual(hasher.verified, [DUMMY_PASSWORD_HASH, DUMMY_PASSWORD_HASH]);
    await store.addUser("off@example.org", PW);
    store.setDisabled("off@example.org", true);
    await store.verifyPassword("off@example.org", PW);
    assert.equal(hasher.verified.at(-1), DUMMY_PASSWORD_HASH);
  }));

test("successful logins are cached; passwd invalidates; failures are never cached", () =>
  withStore(async (store, { hasher }) => {
    await store.addUser("tim@example.org", PW);
    await store.verifyPassword("tim@example.org", PW);
    await store.verifyPassword("tim@example.org", PW);
    await store.verifyPassword("TIM@example.org", PW);
    assert.equal(hasher.verified.length, 1, "one scrypt, then cache hits");
    await store.verifyPassword("tim@example.org", "nope");
    await store.verifyPassword("tim@example.org", "nope");
    assert.equal(hasher.verified.length, 3, "failures always pay");

    await store.setPassword("tim@example.org", "new password");
    assert.deepEqual(await store.verifyPassword("tim@example.org", PW), { ok: false, reason: "bad-password" });
    assert.equal((await store.verifyPassword("tim@example.org", "new password")).ok, true);
    await assert.rejects(store.setPassword("ghost@example.org", "x"), /no such user/);
  }));

test("a password changed by another process (the CLI) defeats the cache at once", () =>
  withStore(async (store, { path }) => {
    await store.addUser("tim@example.org", PW);
    assert.equal((await store.verifyPassword("tim@example.org", PW)).ok, true);
    const cli = new SqliteUserStore({ path, hostname: HOSTNAME });
    await cli.setPassword("tim@example.org", "changed elsewhere");
    cli.close();
    assert.deepEqual(await store.verifyPassword("tim@example.org", PW), { ok: false, reason: "bad-password" });
  }));

test("cache expiry uses the injected clock", async () => {
  let now = 0;
  const cache = new CredentialCache({ ttlMs: 1000, now: () => now });
  await withStore(
    async (store, { hasher }) => {
      await store.addUser("tim@example.org", PW);
      await store.verifyPassword("tim@example.org", PW);
      await store.verifyPassword("tim@example.org", PW);
      now += 1000;
      await store.verifyPassword("tim@example.org", PW);
      assert.equal(hasher.verified.length, 2);
      assert.equal(cache.hits, 1);
    },
    { cache },
  );
});

test("no plaintext password anywhere in the database files; file is owner-only", () =>
  withStore(async (store, { dir, path }) => {
    await store.addUser("tim@example.org", PW);
    await store.setPassword("tim@example.org", `${PW}-second`);
    await store.addUser("ann@example.org", `${PW}-third`);
    const files = (await readdir(dir)).filter((name) => name.startsWith("users.sqlite"));
    assert.ok(files.includes("users.sqlite-wal"), "WAL mode");
    for (const name of files) {
      const content = await readFile(join(dir, name));
      for (const needle of [PW, "plaintext-marker"]) {
        assert.equal(content.indexOf(Buffer.from(needle, "utf8")), -1, `${needle} in ${name}`);
        assert.equal(content.indexOf(Buffer.from(needle, "utf16le")), -1, `${needle} (UTF-16) in ${name}`);
      }
    }
    assert.equal((await stat(path)).mode & 0o777, 0o600);
  }));

test("stored mechanism secrets equal the derivations; DIGEST HA1 only for the store's realm", () =>
  withStore(async (store) => {
    await store.addUser("Tim@example.org", PW);
    const scram = (await store.scramSha256("tim@example.org"))!;
    assert.equal(scram.iterations, 4096);
    assert.equal(scram.salt.length, 16);
    assert.deepEqual(deriveScramSha256(PW, scram.salt, scram.iterations), scram);
    assert.deepEqual(await store.cramMd5("tim@example.org"), deriveCramMd5Secret(PW));
    assert.deepEqual(await store.digestMd5("tim@example.org", HOSTNAME), deriveDigestMd5Ha1("Tim@example.org", HOSTNAME, PW));
    assert.equal(await store.digestMd5("tim@example.org", "other.example"), null);
    assert.equal(await store.scramSha256("ghost@example.org"), null);
    assert.deepEqual(mechanismsFor(store.credentials(), ["DIGEST-MD5"]), ["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN", "DIGEST-MD5"]);
  }));

test("generateSecretsFor computes every secret once", async () => {
  const secrets = await generateSecretsFor(PW, "tim@example.org", HOSTNAME);
  assert.match(secrets.passwordHash, /^\$scrypt\$ln=15,r=8,p=1\$/);
  assert.equal(secrets.scram.salt.length, 16);
  assert.deepEqual(secrets.cramMd5, deriveCramMd5Secret(PW));
  assert.deepEqual(secrets.digestHa1, deriveDigestMd5Ha1("tim@example.org", HOSTNAME, PW));
});

test("senders and disabled flags", () =>
  withStore(async (store) => {
    await store.addUser("tim@example.org", PW);
    store.setSenders("tim@example.org", ["Boss@Example.org", "@lists.example.org"]);
    assert.deepEqual((await store.lookupUser("tim@example.org"))?.senders, ["Boss@example.org", "@lists.example.org"]);
    assert.throws(() => store.setSenders("tim@example.org", ["@"]), /invalid sender/);
    assert.throws(() => store.setSenders("ghost@example.org", []), /no such user/);
    assert.throws(() => store.setDisabled("ghost@example.org", true), /no such user/);
  }));

test("database errors: verifyPassword returns backend-error, secret lookups throw", () =>
  withStore(async (store) => {
    await store.addUser("tim@example.org", PW);
    store.close();
    assert.deepEqual(await store.verifyPassword("tim@example.org", PW), { ok: false, reason: "backend-error", detail: "user database error" });
    await assert.rejects(store.scramSha256("tim@example.org"));
  }));

test("schema: user_version 5 on create; a newer schema is refused", () =>
  withStore(async (store, { path }) => {
    store.close();
    const db = new Database(path);
    assert.equal(db.pragma("user_version", { simple: true }), 5);
    assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
    db.pragma("user_version = 99");
    db.close();
    assert.throws(() => new SqliteUserStore({ path, hostname: HOSTNAME }), /newer than this Postern/);
  }));

test("relay-client flag (issue 12): set at add or later; a version-1 database is upgraded in place, its users keep everything and are not relay clients", () =>
  withStore(async (store, { path }) => {
    await store.addUser("relay@example.org", PW, { senders: ["@example.org"], relayClient: true });
    await store.addUser("tim@example.org", PW);
    assert.deepEqual(await store.lookupUser("relay@example.org"), {
      address: "relay@example.org",
      senders: ["@example.org"],
      disabled: false,
      relayClient: true,
    });
    store.setRelayClient("tim@example.org", true);
    assert.equal((await store.lookupUser("tim@example.org"))?.relayClient, true);
    store.setRelayClient("tim@example.org", false);
    assert.equal((await store.lookupUser("tim@example.org"))?.relayClient, undefined);
    assert.throws(() => store.setRelayClient("ghost@example.org", true), /no such user/);
    store.close();

    // Back to the version-1 schema (the column dropped), as a database written before the flag.
    const db = new Database(path);
    db.exec("DROP TABLE app_passwords; ALTER TABLE users DROP COLUMN require_app_passwords; ALTER TABLE users DROP COLUMN relay_client");
    db.pragma("user_version = 1");
    db.close();
    const upgraded = new SqliteUserStore({ path, hostname: HOSTNAME });
    try {
      assert.deepEqual(await upgraded.lookupUser("relay@example.org"), { address: "relay@example.org", senders: ["@example.org"], disabled: false });
      assert.deepEqual(await upgraded.verifyPassword("tim@example.org", PW), { ok: true, user: "tim@example.org" });
    } finally {
      upgraded.close();
    }
  }));
