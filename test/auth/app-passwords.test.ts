/** App passwords in the SQLite store only (the behaviours both stores share are in store-cases.ts): the format, caching, synchronous last-use records, storage and upgrade. */
import { test } from "node:test";
import assert from "node:assert/strict";
import Database from "better-sqlite3";
import { appPasswordId, canonicalAppPassword, generateAppPassword } from "../../src/auth/app-password.js";
import { CredentialCache } from "../../src/auth/cache.js";
import { SqliteUserStore } from "../../src/auth/sqlite-store.js";
import { createClientMechanism, createServerMechanism } from "../../src/sasl/index.js";
import type { SaslServerStep } from "../../src/sasl/types.js";
import { runExchange } from "../sasl/helpers.js";
import { HOSTNAME, RecordingHasher, withStore } from "./store-helpers.js";

const PW = "main-Passw0rd-of-tim";
const TIM = "tim@example.org";

test("generated app passwords: five groups of four, ~103 bits, canonical form ignores dashes, spaces and case", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const p = generateAppPassword();
    assert.match(p, /^[a-z0-9]{4}(-[a-z0-9]{4}){4}$/);
    seen.add(p);
  }
  assert.equal(seen.size, 200);
  const p = generateAppPassword();
  const canonical = p.replaceAll("-", "");
  assert.equal(canonicalAppPassword(p), canonical);
  assert.equal(canonicalAppPassword(p.toUpperCase().replaceAll("-", " ")), canonical);
  assert.equal(appPasswordId(canonical), canonical.slice(0, 4));
  assert.equal(canonicalAppPassword("short"), null);
  assert.equal(canonicalAppPassword(`${canonical}x`), null);
  assert.equal(canonicalAppPassword(PW), null);
});

test("a refused main password is never cached: turning requireAppPasswords on bites at once", () =>
  withStore(
    async (store, { path, hasher }) => {
      await store.addUser(TIM, PW);
      assert.equal((await store.verifyPassword(TIM, PW)).ok, true); // now cached
      const cli = new SqliteUserStore({ path, hostname: HOSTNAME, hasher });
      cli.setRequireAppPasswords(TIM, true);
      cli.close();
      const r = await store.verifyPassword(TIM, PW);
      assert.equal(!r.ok && r.reason, "app-password-required");
    },
    { cache: new CredentialCache({ ttlMs: 60_000 }) },
  ));

test("last used time and address: recorded on success, rewritten only when the address changes or a minute passed", async () => {
  let now = new Date("2026-12-01T10:00:00.000Z");
  await withStore(
    async (store) => {
      await store.addUser(TIM, PW);
      const phone = await store.addAppPassword(TIM, "phone");
      assert.deepEqual(store.listAppPasswords(TIM), [{ name: "phone", createdAt: "2026-12-01T10:00:00.000Z", lastUsedAt: null, lastUsedIp: null }]);
      await store.verifyPassword(TIM, "wrong-wrong-wrong");
      assert.equal(store.listAppPasswords(TIM)[0]!.lastUsedAt, null, "a failure is no use");
      now = new Date("2026-12-01T10:05:00.000Z");
      await store.verifyPassword(TIM, phone, { remoteIp: "192.0.2.7" });
      assert.deepEqual(store.listAppPasswords(TIM)[0], {
        name: "phone",
        createdAt: "2026-12-01T10:00:00.000Z",
        lastUsedAt: "2026-12-01T10:05:00.000Z",
        lastUsedIp: "192.0.2.7",
      });
      now = new Date("2026-12-01T10:05:30.000Z");
      await store.verifyPassword(TIM, phone, { remoteIp: "192.0.2.7" });
      assert.equal(store.listAppPasswords(TIM)[0]!.lastUsedAt, "2026-12-01T10:05:00.000Z", "same address within a minute: no write");
      await store.verifyPassword(TIM, phone, { remoteIp: "2001:db8::1" });
      assert.deepEqual(store.listAppPasswords(TIM)[0]!.lastUsedIp, "2001:db8::1");
      assert.equal(store.listAppPasswords(TIM)[0]!.lastUsedAt, "2026-12-01T10:05:30.000Z");
    },
    { now: () => now },
  );
});

test("stored hashed: neither the password nor its secret part is in the database; deleting the user drops them", () =>
  withStore(async (store, { path }) => {
    await store.addUser(TIM, PW);
    const phone = await store.addAppPassword(TIM, "phone");
    const canonical = phone.replaceAll("-", "");
    const db = new Database(path, { readonly: true });
    try {
      const rows = db.prepare("SELECT * FROM app_passwords").all() as Record<string, unknown>[];
      assert.equal(rows.length, 1);
      const text = JSON.stringify(rows);
      assert.ok(!text.includes(canonical.slice(4)) && !text.includes(phone.slice(5)), "no secret characters stored");
      assert.equal(rows[0]!.lookup_id, canonical.slice(0, 4));
      assert.match(String(rows[0]!.password_hash), /^\$scrypt\$/);
      assert.equal(db.pragma("user_version", { simple: true }), 5);
      assert.equal(store.deleteUser(TIM), true);
      assert.equal((db.prepare("SELECT count(*) AS n FROM app_passwords").get() as { n: number }).n, 0);
    } finally {
      db.close();
    }
  }));

test("a version-2 database (before app passwords) is upgraded in place, users kept", () =>
  withStore(async (_store, { path }) => {
    // Drop back to v2 by hand: what a Postern before app passwords left.
    _store.close();
    const db = new Database(path);
    db.exec("DROP TABLE app_passwords; ALTER TABLE users DROP COLUMN require_app_passwords");
    db.pragma("user_version = 2");
    db.close();
    const hasher = new RecordingHasher();
    const store = new SqliteUserStore({ path, hostname: HOSTNAME, hasher });
    try {
      await store.addUser(TIM, PW);
      const phone = await store.addAppPassword(TIM, "phone");
      assert.equal((await store.verifyPassword(TIM, phone)).ok, true);
    } finally {
      store.close();
    }
  }));

test("SCRAM-SHA-256 and CRAM-MD5 take app passwords, as shown or without dashes; the main secret is refused under requireAppPasswords; use recorded; revocation bites", () => {
  let now = new Date("2026-12-03T10:00:00Z");
  return withStore(
    async (clocked) => {
      await clocked.addUser(TIM, PW);
      const phone = await clocked.addAppPassword(TIM, "phone");
      const laptop = await clocked.addAppPassword(TIM, "laptop");
      const logins: string[] = [];
      const verifier = Object.assign(Object.create(clocked) as SqliteUserStore, {
        appPasswordUsed: (user: string, name: string) => (logins.push(`${user}:${name}`), clocked.appPasswordUsed(user, name, { remoteIp: "192.0.2.7" })),
      });
      const run = (mechanism: string, password: string) =>
        runExchange(
          createServerMechanism(mechanism, { verifier, hostname: HOSTNAME, authzidAllowed: () => false, fakeSaltKey: Buffer.alloc(32, 1) })!,
          createClientMechanism(mechanism, { username: TIM, password })!,
        );
      const who = (step: SaslServerStep) =>
        step.kind === "success" ? (step.identity.credential ?? "main") : step.kind === "failure" ? step.reason : step.kind;
      for (const mechanism of ["SCRAM-SHA-256", "CRAM-MD5"]) {
        assert.equal(who(await run(mechanism, phone)), "phone", `${mechanism}, grouped as shown`);
        assert.equal(who(await run(mechanism, phone.replaceAll("-", ""))), "phone", `${mechanism}, without dashes`);
        assert.equal(who(await run(mechanism, laptop)), "laptop", mechanism);
        assert.equal(who(await run(mechanism, PW)), "main", mechanism);
        assert.equal(who(await run(mechanism, "abcd-efgh-ijkl-mnop-qrst")), "bad-password", mechanism);
      }
      assert.ok(logins.includes(`${TIM}:phone`) && logins.includes(`${TIM}:laptop`));
      const listed = clocked.listAppPasswords(TIM).find((p) => p.name === "phone");
      assert.equal(listed?.lastUsedIp, "192.0.2.7");
      assert.equal(listed?.lastUsedAt, now.toISOString());

      clocked.setRequireAppPasswords(TIM, true);
      for (const mechanism of ["SCRAM-SHA-256", "CRAM-MD5"]) {
        assert.equal(who(await run(mechanism, PW)), "app-password-required", mechanism);
        assert.equal(who(await run(mechanism, phone)), "phone", mechanism);
      }
      // A new main password keeps the user's SCRAM salt, so the devices' SCRAM keys stay valid.
      await clocked.setPassword(TIM, "a new main password");
      clocked.setRequireAppPasswords(TIM, false);
      now = new Date("2026-12-03T11:00:00Z");
      assert.equal(who(await run("SCRAM-SHA-256", phone)), "phone");
      assert.equal(who(await run("SCRAM-SHA-256", "a new main password")), "main");
      assert.equal(clocked.revokeAppPassword(TIM, "phone"), true);
      for (const mechanism of ["SCRAM-SHA-256", "CRAM-MD5"]) {
        assert.equal(who(await run(mechanism, phone)), "bad-password", `${mechanism}: revoked`);
        assert.equal(who(await run(mechanism, laptop)), "laptop", `${mechanism}: the other device goes on`);
      }
    },
    { now: () => now },
  );
});
