/** Every SASL mechanism, server and client, against the real SqliteUserStore on a temp file. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createClientMechanism, createServerMechanism, SERVER_MECHANISMS as ALL_MECHANISMS } from "../../src/sasl/index.js";
import { findMechanism } from "../../src/sasl/registry.js";
import type { SaslServerOptions, SaslServerStep } from "../../src/sasl/types.js";
import type { SqliteUserStore } from "../../src/auth/sqlite-store.js";
import { runExchange } from "../sasl/helpers.js";
import { HOSTNAME, withStore } from "./store-helpers.js";

/** The password store's mechanisms; bearer tokens come from an issuer (test/e2e/oauth.test.ts). */
const SERVER_MECHANISMS = ALL_MECHANISMS.filter((name) => findMechanism(name)?.needs !== "bearer-token");
const PASSWORD = "s3cret wörd"; // non-ASCII on purpose
const options = (store: SqliteUserStore): SaslServerOptions => ({
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

test("every mechanism: success, bad password, unknown user, disabled user, authzid", () =>
  withStore(async (store) => {
    await store.addUser("tim@example.org", PASSWORD);
    await store.addUser("admin@example.org", PASSWORD);
    await store.addUser("off@example.org", PASSWORD);
    store.setDisabled("off@example.org", true);
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
