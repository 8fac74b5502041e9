/**
 * Concurrent first logins of one account share one password-hash computation (issue 6: ten
 * sessions authenticating at once cost one scrypt, not ten), and nothing else is shared.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { SqliteUserStore } from "../../src/auth/sqlite-store.js";
import { SCRYPT_HASHER, type PasswordHasher } from "../../src/auth/user-secrets.js";

/** The real scrypt hasher, counting the verifications it performs. */
function countingHasher(): PasswordHasher & { verifications: number } {
  const h = {
    verifications: 0,
    hash: (pw: string) => SCRYPT_HASHER.hash(pw),
    verify: (pw: string, stored: string) => {
      h.verifications++;
      return SCRYPT_HASHER.verify(pw, stored);
    },
  };
  return h;
}

async function storeWith(hasher: PasswordHasher, cacheTtlSec = 60) {
  const store = new SqliteUserStore({ path: ":memory:", hostname: "mail.example.org", hasher, cacheTtlSec });
  await store.addUser("ann@example.org", "correct horse");
  return store;
}

test("ten concurrent logins with the right password cost one verification", async () => {
  const hasher = countingHasher();
  const store = await storeWith(hasher);
  const results = await Promise.all(Array.from({ length: 10 }, () => store.verifyPassword("ann@example.org", "correct horse")));
  assert.deepEqual(new Set(results.map((r) => r.ok)), new Set([true]));
  assert.equal(hasher.verifications, 1);
  store.close();
});

test("a concurrent wrong password is verified on its own and fails", async () => {
  const hasher = countingHasher();
  const store = await storeWith(hasher);
  const [right, wrong] = await Promise.all([store.verifyPassword("ann@example.org", "correct horse"), store.verifyPassword("ann@example.org", "wrong horse")]);
  assert.equal(right.ok, true);
  assert.deepEqual(wrong, { ok: false, reason: "bad-password" });
  assert.equal(hasher.verifications, 2);
  store.close();
});

test("a failed verification is not remembered: the next attempt hashes again", async () => {
  const hasher = countingHasher();
  const store = await storeWith(hasher);
  await Promise.all([store.verifyPassword("ann@example.org", "nope"), store.verifyPassword("ann@example.org", "nope")]);
  assert.equal(hasher.verifications, 1, "two concurrent identical guesses share one hash");
  assert.equal((await store.verifyPassword("ann@example.org", "nope")).ok, false);
  assert.equal(hasher.verifications, 2);
  store.close();
});

test("no oracle: concurrent identical guesses cost one hash for an unknown user too", async () => {
  const hasher = countingHasher();
  const store = await storeWith(hasher);
  const guesses = (user: string) => Promise.all(Array.from({ length: 5 }, () => store.verifyPassword(user, "guess")));
  const before = hasher.verifications;
  const known = await guesses("ann@example.org");
  const knownCost = hasher.verifications - before;
  const unknown = await guesses("nobody@example.org");
  const unknownCost = hasher.verifications - before - knownCost;
  assert.ok(known.every((r) => !r.ok) && unknown.every((r) => !r.ok));
  assert.equal(knownCost, 1);
  assert.equal(unknownCost, knownCost);
  store.close();
});

test("without a cache (cacheTtlSec 0) nothing is shared, for known and unknown users alike", async () => {
  const hasher = countingHasher();
  const store = await storeWith(hasher, 0);
  await Promise.all([store.verifyPassword("ann@example.org", "correct horse"), store.verifyPassword("ann@example.org", "correct horse")]);
  await Promise.all([store.verifyPassword("nobody@example.org", "x"), store.verifyPassword("nobody@example.org", "x")]);
  assert.equal(hasher.verifications, 4);
  store.close();
});
