/** App passwords in the SQLite store: one hash per login, requireAppPasswords, revocation across processes. */
import { test } from "node:test";
import assert from "node:assert/strict";
import Database from "better-sqlite3";
import { appPasswordId, canonicalAppPassword, generateAppPassword } from "../../src/auth/app-password.js";
import { CredentialCache } from "../../src/auth/cache.js";
import { DUMMY_PASSWORD_HASH } from "../../src/auth/password-hash.js";
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

test("an app password logs in as its user (named in the result), the main password still works, the wrong one does not", () =>
  withStore(async (store) => {
    await store.addUser(TIM, PW);
    const phone = await store.addAppPassword(TIM, "phone");
    const laptop = await store.addAppPassword(TIM, "laptop");
    assert.notEqual(phone, laptop);
    assert.deepEqual(await store.verifyPassword("Tim@Example.org", phone, { remoteIp: "192.0.2.7" }), { ok: true, user: TIM, credential: "phone" });
    assert.deepEqual(await store.verifyPassword(TIM, laptop.toUpperCase().replaceAll("-", "")), { ok: true, user: TIM, credential: "laptop" });
    assert.deepEqual(await store.verifyPassword(TIM, PW), { ok: true, user: TIM });
    // Right id, wrong secret: refused, and the log's detail names the credential, not the value.
    const wrong = `${phone.slice(0, 5)}${"a".repeat(4)}-${phone.slice(10)}`;
    const result = await store.verifyPassword(TIM, wrong);
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.reason, "bad-password");
    assert.equal(!result.ok && result.detail, 'app password "phone"');
    // Another user's app password is no use here.
    await store.addUser("ann@example.org", "ann-pw");
    assert.equal((await store.verifyPassword("ann@example.org", phone)).ok, false);
    await assert.rejects(store.addAppPassword(TIM, " phone "), /already has an app password named "phone"/);
    await assert.rejects(store.addAppPassword(TIM, "bad\nname"), /invalid app password name/);
    await assert.rejects(store.addAppPassword("who@example.org", "x"), /no such user/);
  }));

test("each login costs one hash, however many app passwords the user has (no oracle on their number)", () =>
  withStore(async (store, { hasher }) => {
    await store.addUser(TIM, PW);
    await store.addUser("ann@example.org", "ann-pw");
    const passwords: string[] = [];
    for (let i = 0; i < 10; i++) passwords.push(await store.addAppPassword(TIM, `device ${i}`));
    const count = async (login: string, password: string) => {
      const before = hasher.verified.length;
      await store.verifyPassword(login, password);
      return hasher.verified.length - before;
    };
    assert.equal(await count(TIM, "wrong guess"), 1);
    assert.equal(await count(TIM, generateAppPassword()), 1, "app-password-shaped guess");
    assert.equal(await count("ann@example.org", "wrong guess"), 1, "a user without app passwords");
    assert.equal(await count("nobody@example.org", generateAppPassword()), 1);
    assert.equal(hasher.verified.at(-1), DUMMY_PASSWORD_HASH);
    assert.equal(await count(TIM, passwords[7]!), 1);
  }));

test("requireAppPasswords: the main password is refused with its own reason, app passwords work, SCRAM/CRAM/DIGEST main secrets withheld", () =>
  withStore(async (store) => {
    await store.addUser(TIM, PW, { requireAppPasswords: true });
    const phone = await store.addAppPassword(TIM, "phone");
    const refused = await store.verifyPassword(TIM, PW);
    assert.equal(!refused.ok && refused.reason, "app-password-required");
    assert.deepEqual(await store.verifyPassword(TIM, "not it"), { ok: false, reason: "bad-password" }, "a wrong password says so");
    assert.equal((await store.verifyPassword(TIM, phone)).ok, true);
    // SCRAM and CRAM-MD5 still get the user's secrets (app passwords live beside them), marked refused.
    assert.equal((await store.scramSha256(TIM))?.mainRefused, true);
    assert.equal((await store.cramMd5(TIM))?.mainRefused, true);
    assert.equal(await store.digestMd5(TIM, HOSTNAME), null);
    assert.equal(store.hasUser(TIM), true, "the log then says no-usable-secret, not unknown-user");
    assert.deepEqual(store.requiresAppPasswords(TIM), { required: true, byDefault: false });
    store.setRequireAppPasswords(TIM, false);
    assert.deepEqual(await store.verifyPassword(TIM, PW), { ok: true, user: TIM });
    assert.equal((await store.scramSha256(TIM))?.mainRefused, undefined);
  }));

test("auth.requireAppPasswords is the default; a user's own setting overrides it", () =>
  withStore(
    async (store) => {
      await store.addUser(TIM, PW);
      await store.addUser("ann@example.org", "ann-pw", { requireAppPasswords: false });
      assert.equal((await store.verifyPassword(TIM, PW)).ok, false);
      assert.deepEqual(store.requiresAppPasswords(TIM), { required: true, byDefault: true });
      assert.equal((await store.verifyPassword("ann@example.org", "ann-pw")).ok, true);
      store.setRequireAppPasswords("ann@example.org", null);
      assert.equal((await store.verifyPassword("ann@example.org", "ann-pw")).ok, false);
    },
    { requireAppPasswords: true },
  ));

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

test("revoking from another process (the CLI) stops a cached app password at once", () =>
  withStore(
    async (store, { path, hasher }) => {
      await store.addUser(TIM, PW);
      const phone = await store.addAppPassword(TIM, "phone");
      const laptop = await store.addAppPassword(TIM, "laptop");
      assert.equal((await store.verifyPassword(TIM, phone)).ok, true);
      const before = hasher.verified.length;
      assert.equal((await store.verifyPassword(TIM, phone)).ok, true);
      assert.equal(hasher.verified.length, before, "second login served by the cache");
      const cli = new SqliteUserStore({ path, hostname: HOSTNAME, hasher });
      assert.equal(cli.revokeAppPassword(TIM, "phone"), true);
      assert.equal(cli.revokeAppPassword(TIM, "phone"), false);
      cli.close();
      const r = await store.verifyPassword(TIM, phone);
      assert.equal(!r.ok && r.reason, "bad-password");
      assert.equal((await store.verifyPassword(TIM, laptop)).ok, true, "the other device keeps working");
      assert.deepEqual(
        store.listAppPasswords(TIM).map((p) => p.name),
        ["laptop"],
      );
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
