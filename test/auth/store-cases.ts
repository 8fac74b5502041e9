/**
 * The built-in user store's behaviours, the same on every backend: each SASL mechanism (server and
 * client) and app passwords through the store. test/auth/mechanisms-through-store.test.ts runs them
 * on SQLite, test/pg/users.test.ts on PostgreSQL.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { generateAppPassword } from "../../src/auth/app-password.js";
import { DUMMY_PASSWORD_HASH } from "../../src/auth/password-hash.js";
import type { Authenticator } from "../../src/auth/types.js";
import type { UserStoreAdmin } from "../../src/auth/user-store-rules.js";
import { createClientMechanism, createServerMechanism, SERVER_MECHANISMS as ALL_MECHANISMS } from "../../src/sasl/index.js";
import { findMechanism } from "../../src/sasl/registry.js";
import type { SaslServerOptions, SaslServerStep } from "../../src/sasl/types.js";
import { runExchange } from "../sasl/helpers.js";
import { HOSTNAME, type RecordingHasher } from "./store-helpers.js";

/** A store under test: the verifier side and the admin side. */
export type CaseStore = Authenticator & UserStoreAdmin & { hasUser(user: string): boolean };

export interface CaseStoreOptions {
  requireAppPasswords?: boolean;
  now?: () => Date;
  /** A verified-credentials cache with this lifetime (default: none). */
  cacheTtlSec?: number;
}

/** Runs body on a fresh, empty store; `other()` opens a second store on the same data (another process or node). */
export type WithCaseStore = <T>(
  body: (store: CaseStore, ctx: { hasher: RecordingHasher; other(): Promise<CaseStore> }) => Promise<T>,
  options?: CaseStoreOptions,
) => Promise<T>;

/** The password store's mechanisms; bearer tokens come from an issuer (test/e2e/oauth.test.ts). */
const SERVER_MECHANISMS = ALL_MECHANISMS.filter((name) => findMechanism(name)?.needs !== "bearer-token");
const PASSWORD = "s3cret wörd"; // non-ASCII on purpose
const options = (store: CaseStore): SaslServerOptions => ({
  verifier: store,
  hostname: HOSTNAME,
  authzidAllowed: (authcid, authzid) => authcid === "admin@example.org" && authzid.endsWith("@example.org"),
  fakeSaltKey: randomBytes(32),
  channelBinding: () => BINDING,
});
/** The connection's tls-exporter data: SCRAM -PLUS binds to it (the other clients are not given it). */
const BINDING = randomBytes(32);
const bound = (name: string) => (name.endsWith("-PLUS") ? { channelBinding: () => BINDING } : {});
const reason = (step: SaslServerStep) => (step.kind === "failure" ? step.reason : step.kind);

export function mechanismCases(withStore: WithCaseStore): void {
  test("every mechanism: success, bad password, unknown user, disabled user, authzid", () =>
    withStore(async (store) => {
      await store.addUser("tim@example.org", PASSWORD);
      await store.addUser("admin@example.org", PASSWORD);
      await store.addUser("off@example.org", PASSWORD);
      await store.setDisabled("off@example.org", true);
      const run = (name: string, username: string, password: string, authzid?: string) =>
        runExchange(
          createServerMechanism(name, options(store))!,
          createClientMechanism(name, { username, password, ...(authzid ? { authzid } : {}) }, bound(name))!,
        );

      for (const name of SERVER_MECHANISMS) {
        assert.deepEqual(
          await run(name, "tim@example.org", PASSWORD),
          { kind: "success", identity: { authcid: "tim@example.org", authzid: "tim@example.org" } },
          name,
        );
        assert.equal(reason(await run(name, "tim@example.org", "wrong")), "bad-password", name);
        assert.equal(reason(await run(name, "ghost@example.org", PASSWORD)), "unknown-user", name);
        assert.equal(reason(await run(name, "off@example.org", PASSWORD)), "unknown-user", name);
      }
      for (const name of ["PLAIN", "SCRAM-SHA-256", "DIGEST-MD5"]) {
        assert.deepEqual(
          await run(name, "admin@example.org", PASSWORD, "tim@example.org"),
          { kind: "success", identity: { authcid: "admin@example.org", authzid: "tim@example.org" } },
          name,
        );
        assert.equal(reason(await run(name, "tim@example.org", PASSWORD, "admin@example.org")), "authzid-not-permitted", name);
      }
    }));

  test("PLAIN and LOGIN report the canonical address; secret-based mechanisms report the login as sent", () =>
    withStore(async (store) => {
      await store.addUser("tim@example.org", PASSWORD);
      const run = (name: string) =>
        runExchange(createServerMechanism(name, options(store))!, createClientMechanism(name, { username: "TIM@Example.org", password: PASSWORD })!);
      for (const name of ["PLAIN", "LOGIN"]) {
        assert.deepEqual(await run(name), { kind: "success", identity: { authcid: "tim@example.org", authzid: "tim@example.org" } });
      }
      for (const name of ["SCRAM-SHA-256", "CRAM-MD5"]) {
        const step = await run(name);
        assert.deepEqual(step, { kind: "success", identity: { authcid: "TIM@Example.org", authzid: "TIM@Example.org" } });
        assert.equal((await store.lookupUser(step.kind === "success" ? step.identity.authcid : ""))?.address, "tim@example.org");
      }
      // DIGEST-MD5 hashes the user name into HA1, so only the stored spelling works.
      assert.equal(reason(await run("DIGEST-MD5")), "bad-password");
    }));

  test("a password change applies to every mechanism", () =>
    withStore(async (store) => {
      await store.addUser("tim@example.org", PASSWORD);
      await store.setPassword("tim@example.org", "n3w");
      for (const name of SERVER_MECHANISMS) {
        const run = (password: string) =>
          runExchange(createServerMechanism(name, options(store))!, createClientMechanism(name, { username: "tim@example.org", password }, bound(name))!);
        assert.equal(reason(await run(PASSWORD)), "bad-password", name);
        assert.equal((await run("n3w")).kind, "success", name);
      }
    }));
}

const PW = "main-Passw0rd-of-tim";
const TIM = "tim@example.org";

export function appPasswordCases(withStore: WithCaseStore): void {
  test("an app password logs in as its user (named in the result), the main password still works, the wrong one does not", () =>
    withStore(async (store) => {
      await store.addUser(TIM, PW);
      const phone = await store.addAppPassword(TIM, "phone");
      const laptop = await store.addAppPassword(TIM, "laptop");
      assert.notEqual(phone, laptop);
      assert.deepEqual(await store.verifyPassword("Tim@Example.org", phone, { remoteIp: "192.0.2.7" }), { ok: true, user: TIM, credential: "phone" });
      assert.deepEqual(await store.verifyPassword(TIM, phone.toUpperCase().replaceAll("-", "")), { ok: true, user: TIM, credential: "phone" });
      assert.deepEqual(await store.verifyPassword(TIM, laptop), { ok: true, user: TIM, credential: "laptop" });
      assert.deepEqual(await store.verifyPassword(TIM, PW), { ok: true, user: TIM });
      const wrong = `${phone.slice(0, 5)}${"a".repeat(4)}-${phone.slice(10)}`;
      assert.deepEqual(await store.verifyPassword(TIM, wrong), { ok: false, reason: "bad-password", detail: 'app password "phone"' });
      await store.addUser("ann@example.org", "ann-pw");
      assert.equal((await store.verifyPassword("ann@example.org", phone)).ok, false);
      await assert.rejects(store.addAppPassword(TIM, " phone "), /already has an app password named "phone"/);
      await assert.rejects(store.addAppPassword(TIM, "bad\nname"), /invalid app password name/);
      await assert.rejects(store.addAppPassword("who@example.org", "x"), /no such user/);
      await assert.rejects(store.addUser("Tim@EXAMPLE.org", "x"), /user already exists/);
    }));

  test("each login costs one hash, however many app passwords the user has", () =>
    withStore(async (store, { hasher }) => {
      await store.addUser(TIM, PW);
      await store.addUser("ann@example.org", "ann-pw");
      const passwords: string[] = [];
      for (let i = 0; i < 5; i++) passwords.push(await store.addAppPassword(TIM, `device ${i}`));
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
      assert.equal(await count(TIM, passwords[3]!), 1);
    }));

  test("requireAppPasswords: main password refused with its own reason, SCRAM/CRAM marked refused, DIGEST withheld; the default and a user's override", () =>
    withStore(
      async (store) => {
        await store.addUser(TIM, PW, { requireAppPasswords: true });
        await store.addUser("ann@example.org", "ann-pw", { requireAppPasswords: false });
        await store.addUser("bob@example.org", "bob-pw");
        const phone = await store.addAppPassword(TIM, "phone");
        const refused = await store.verifyPassword(TIM, PW);
        assert.equal(!refused.ok && refused.reason, "app-password-required");
        assert.deepEqual(await store.verifyPassword(TIM, "not it"), { ok: false, reason: "bad-password" });
        assert.equal((await store.verifyPassword(TIM, phone)).ok, true);
        assert.equal((await store.scramSha256(TIM))?.mainRefused, true);
        assert.equal((await store.cramMd5(TIM))?.mainRefused, true);
        assert.equal(await store.digestMd5(TIM, HOSTNAME), null);
        assert.equal(store.hasUser(TIM), true, "the log then says no-usable-secret, not unknown-user");
        assert.equal(await store.digestMd5("ghost@example.org", HOSTNAME), null);
        assert.equal(store.hasUser("ghost@example.org"), false);
        assert.deepEqual(await store.requiresAppPasswords(TIM), { required: true, byDefault: false });
        assert.deepEqual(await store.requiresAppPasswords("bob@example.org"), { required: true, byDefault: true });
        assert.equal((await store.verifyPassword("bob@example.org", "bob-pw")).ok, false, "the default (on here)");
        assert.equal((await store.verifyPassword("ann@example.org", "ann-pw")).ok, true, "her own setting");
        await store.setRequireAppPasswords(TIM, false);
        assert.deepEqual(await store.verifyPassword(TIM, PW), { ok: true, user: TIM });
        assert.equal((await store.scramSha256(TIM))?.mainRefused, undefined);
        await store.setRequireAppPasswords("ann@example.org", null);
        assert.equal((await store.verifyPassword("ann@example.org", "ann-pw")).ok, false);
      },
      { requireAppPasswords: true },
    ));

  test("revoked or disabled through another store on the same data: stops at once, even when cached", () =>
    withStore(
      async (store, { hasher, other }) => {
        await store.addUser(TIM, PW);
        const phone = await store.addAppPassword(TIM, "phone");
        const laptop = await store.addAppPassword(TIM, "laptop");
        assert.equal((await store.verifyPassword(TIM, phone)).ok, true);
        const before = hasher.verified.length;
        assert.equal((await store.verifyPassword(TIM, phone)).ok, true);
        assert.equal(hasher.verified.length, before, "second login served by the cache");
        const admin = await other();
        assert.equal(await admin.revokeAppPassword(TIM, "phone"), true);
        assert.equal(await admin.revokeAppPassword(TIM, "phone"), false);
        const revoked = await store.verifyPassword(TIM, phone);
        assert.equal(!revoked.ok && revoked.reason, "bad-password", "refused");
        assert.equal((await store.verifyPassword(TIM, laptop)).ok, true, "the other device keeps working");
        assert.deepEqual(
          (await store.listAppPasswords(TIM)).map((p) => p.name),
          ["laptop"],
        );
        await admin.setDisabled(TIM, true);
        assert.equal((await store.verifyPassword(TIM, laptop)).ok, false, "disabled elsewhere");
        await admin.setDisabled(TIM, false);
        await admin.setRequireAppPasswords(TIM, true);
        const r = await store.verifyPassword(TIM, PW);
        assert.equal(!r.ok && r.reason, "app-password-required", "a cached main password is not enough");
        assert.equal(await admin.deleteUser(TIM), true);
        assert.equal(await admin.deleteUser(TIM), false);
        assert.equal((await store.verifyPassword(TIM, laptop)).ok, false, "deleted: its app passwords went with it");
        await admin.close();
      },
      { cacheTtlSec: 60 },
    ));

  test("last used time and address: recorded on success, rewritten only when the address changes or a minute passed", async () => {
    let now = new Date("2026-12-01T10:00:00.000Z");
    await withStore(
      async (store) => {
        await store.addUser(TIM, PW);
        const phone = await store.addAppPassword(TIM, "phone");
        assert.deepEqual(await store.listAppPasswords(TIM), [{ name: "phone", createdAt: "2026-12-01T10:00:00.000Z", lastUsedAt: null, lastUsedIp: null }]);
        now = new Date("2026-12-01T10:05:00.000Z");
        await store.verifyPassword(TIM, phone, { remoteIp: "192.0.2.7" });
        // The record is written after the login answers: wait for it as the next login would.
        const first = async () => (await store.listAppPasswords(TIM))[0]!;
        await until(async () => (await first()).lastUsedAt !== null);
        assert.deepEqual(await first(), {
          name: "phone",
          createdAt: "2026-12-01T10:00:00.000Z",
          lastUsedAt: "2026-12-01T10:05:00.000Z",
          lastUsedIp: "192.0.2.7",
        });
        now = new Date("2026-12-01T10:05:30.000Z");
        await store.verifyPassword(TIM, phone, { remoteIp: "192.0.2.7" });
        await store.verifyPassword(TIM, phone, { remoteIp: "2001:db8::1" });
        await until(async () => (await first()).lastUsedIp === "2001:db8::1");
        assert.equal((await first()).lastUsedAt, "2026-12-01T10:05:30.000Z");
      },
      { now: () => now },
    );
  });

  test("SCRAM-SHA-256 and CRAM-MD5 take app passwords, as shown or without dashes; main refused under requireAppPasswords; salt kept on a new password; revocation bites", () =>
    withStore(async (store) => {
      await store.addUser(TIM, PW);
      const phone = await store.addAppPassword(TIM, "phone");
      const laptop = await store.addAppPassword(TIM, "laptop");
      const run = (mechanism: string, password: string) =>
        runExchange(
          createServerMechanism(mechanism, { verifier: store, hostname: HOSTNAME, authzidAllowed: () => false, fakeSaltKey: Buffer.alloc(32, 1) })!,
          createClientMechanism(mechanism, { username: TIM, password })!,
        );
      const who = (step: SaslServerStep) => (step.kind === "success" ? (step.identity.credential ?? "main") : reason(step));
      for (const mechanism of ["SCRAM-SHA-256", "CRAM-MD5"]) {
        assert.equal(who(await run(mechanism, phone)), "phone", `${mechanism}, grouped as shown`);
        assert.equal(who(await run(mechanism, phone.replaceAll("-", ""))), "phone", `${mechanism}, without dashes`);
        assert.equal(who(await run(mechanism, laptop)), "laptop", mechanism);
        assert.equal(who(await run(mechanism, PW)), "main", mechanism);
        assert.equal(who(await run(mechanism, "abcd-efgh-ijkl-mnop-qrst")), "bad-password", mechanism);
      }
      await store.setRequireAppPasswords(TIM, true);
      for (const mechanism of ["SCRAM-SHA-256", "CRAM-MD5"]) {
        assert.equal(who(await run(mechanism, PW)), "app-password-required", mechanism);
        assert.equal(who(await run(mechanism, phone)), "phone", mechanism);
      }
      await store.setPassword(TIM, "a new main password");
      await store.setRequireAppPasswords(TIM, false);
      assert.equal(who(await run("SCRAM-SHA-256", phone)), "phone");
      assert.equal(who(await run("SCRAM-SHA-256", "a new main password")), "main");
      assert.equal(await store.revokeAppPassword(TIM, "phone"), true);
      for (const mechanism of ["SCRAM-SHA-256", "CRAM-MD5"]) {
        assert.equal(who(await run(mechanism, phone)), "bad-password", `${mechanism}: revoked`);
        assert.equal(who(await run(mechanism, laptop)), "laptop", `${mechanism}: the other device goes on`);
      }
    }));

  test("admin operations: list, senders, relay client, lookups fold ASCII case only", () =>
    withStore(async (store) => {
      await store.addUser("Tim@Example.ORG", PW, { senders: ["@Example.NET", " tim@other.example "] });
      await store.addUser("ann@example.org", "ann-pw", { relayClient: true });
      assert.deepEqual(await store.listUsers(), [
        { address: "ann@example.org", senders: [], disabled: false, relayClient: true },
        { address: "Tim@example.org", senders: ["@example.net", "tim@other.example"], disabled: false },
      ]);
      assert.equal((await store.lookupUser("TIM@example.org"))?.address, "Tim@example.org");
      await store.setSenders("tim@example.org", ["@a.example"]);
      await store.setRelayClient("ann@example.org", false);
      await store.setDisabled("tim@example.org", true);
      assert.deepEqual(await store.lookupUser("tim@example.org"), { address: "Tim@example.org", senders: ["@a.example"], disabled: true });
      assert.deepEqual(await store.lookupUser("ann@example.org"), { address: "ann@example.org", senders: [], disabled: false });
      await store.addUser("jörg@example.org", "j-pw");
      assert.equal(await store.lookupUser("JÖRG@example.org"), null, "non-ASCII matches exactly");
      assert.equal((await store.verifyPassword("jörg@example.org", "j-pw")).ok, true);
      await assert.rejects(async () => store.setSenders("ghost@example.org", []), /no such user/);
      await assert.rejects(async () => store.setSenders("tim@example.org", ["not an address"]), /invalid sender entry/);
      await assert.rejects(store.addUser("bare", "x"), /not a valid address/);
    }));
}

/** Polls a condition an asynchronous write will make true (no fixed sleep: each check is a query). */
async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error("condition never became true");
}
