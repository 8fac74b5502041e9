/**
 * One connection's AUTH guard (src/policy/auth-guard.ts): the per-account lockout in front of the
 * credential store, the account counted on failure, and the lockout log callback.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { AuthThrottle, DEFAULT_AUTH_THROTTLE, type AuthThrottleConfig } from "../../src/policy/auth-throttle.js";
import { guardConnection } from "../../src/policy/auth-guard.js";
import { MemoryVerifier } from "../helpers/memory-verifier.js";

const IP = "203.0.113.5";
const ALICE = "alice@example.org";

function setup(config: Partial<AuthThrottleConfig> = {}, ip = IP) {
  const throttle = new AuthThrottle({ ...DEFAULT_AUTH_THROTTLE, ...config }, ["192.0.2.0/24"], () => 1_000_000);
  const store = new MemoryVerifier({ [ALICE]: "secret" });
  const locks: [string, string | undefined][] = [];
  const guard = guardConnection(throttle, ip, store, (scope, user) => locks.push([scope, user]));
  return { throttle, store, locks, guard };
}

test("a failure counts against the account the exchange named, and the lockout is reported once", () => {
  const { throttle, locks, guard } = setup({ accountFailures: 2, ipFailures: 100 });
  for (let i = 0; i < 2; i++) {
    assert.equal(guard.authGuard.refusal(), null);
    guard.login(ALICE);
    guard.authGuard.failed();
  }
  assert.deepEqual(locks, [["account", ALICE]]);
  assert.equal(throttle.checkAccount(IP, ALICE).refused, true);
  guard.authGuard.refusal();
  assert.throws(() => guard.login(ALICE), /account throttled/, "named again: refused, and still the tried account");
  guard.authGuard.failed();
  assert.deepEqual(locks, [["account", ALICE]], "reported once");
});

test("a locked-out account is refused before the store is asked: password → backend-error, secrets → throw", async () => {
  const { store, guard } = setup({ accountFailures: 1, ipFailures: 100 });
  guard.login(ALICE);
  guard.authGuard.failed();
  const calls = store.calls.length;
  assert.deepEqual(await guard.verifier.verifyPassword(ALICE, "secret"), { ok: false, reason: "backend-error", detail: "account throttled for 900 s" });
  await assert.rejects(guard.verifier.scramSha256(ALICE), /account throttled/);
  await assert.rejects(guard.verifier.cramMd5(ALICE), /account throttled/);
  await assert.rejects(guard.verifier.digestMd5(ALICE, "example.org"), /account throttled/);
  assert.throws(() => guard.login(ALICE), /account throttled/);
  assert.equal(store.calls.length, calls, "the store was never asked");
  assert.deepEqual(await guard.verifier.verifyPassword("bob@example.org", "x"), { ok: false, reason: "unknown-user" }, "another account still goes through");
});

test("the lookups reach the store unchanged while the account is not locked", async () => {
  const { store, guard } = setup();
  assert.deepEqual(await guard.verifier.verifyPassword(ALICE, "secret"), { ok: true, user: ALICE });
  assert.ok(await guard.verifier.scramSha256(ALICE));
  assert.deepEqual(guard.verifier.credentials(), store.credentials());
  assert.equal(guard.verifier.loginKey!(" Alice "), " Alice ", "no loginKey in the store: the name as sent");
});

test("past ipFailures the IP is refused with a reason, and the lockout is reported without a user", () => {
  const { locks, guard } = setup({ ipFailures: 2, penaltyBaseMs: 1000 });
  guard.authGuard.refusal();
  assert.equal(guard.authGuard.failed(), 0, "no penalty for the first failure");
  guard.authGuard.refusal();
  assert.equal(guard.authGuard.failed(), 1000, "the second one costs the base penalty");
  assert.deepEqual(locks, [["ip", undefined]]);
  assert.equal(guard.authGuard.refusal(), "ip locked out for 900 s");
});

test("refusal() starts a new exchange: a failure without a named login counts the IP only", () => {
  const { throttle, guard } = setup({ accountFailures: 1, ipFailures: 100 });
  guard.login(ALICE);
  guard.authGuard.refusal();
  guard.authGuard.failed();
  assert.equal(throttle.checkAccount(IP, ALICE).refused, false);
});

test("success forgets the account's failures, for the login the exchange named", () => {
  const { throttle, guard } = setup({ accountFailures: 2, ipFailures: 100 });
  guard.login(ALICE);
  guard.authGuard.failed();
  guard.authGuard.refusal();
  guard.login(ALICE);
  guard.authGuard.succeeded("canonical@example.org");
  guard.authGuard.refusal();
  guard.login(ALICE);
  guard.authGuard.failed();
  assert.equal(throttle.checkAccount(IP, ALICE).refused, false, "one failure since the success");
});

test("an exempt client is never throttled", () => {
  const { locks, guard } = setup({ ipFailures: 1, accountFailures: 1 }, "192.0.2.7");
  for (let i = 0; i < 5; i++) {
    guard.authGuard.refusal();
    guard.login(ALICE);
    assert.equal(guard.authGuard.failed(), 0);
  }
  assert.deepEqual(locks, []);
  assert.equal(guard.authGuard.refusal(), null);
});
