import { test } from "node:test";
import assert from "node:assert/strict";
import { CredentialCache } from "../../src/auth/cache.js";

function fakeClock() {
  let now = 1_000_000;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

test("a cached login matches only the same user, password and stamp", () => {
  const cache = new CredentialCache();
  cache.put("a@x", "pw", "hash1");
  assert.equal(cache.has("a@x", "pw", "hash1"), true);
  assert.equal(cache.has("a@x", "pw2", "hash1"), false);
  assert.equal(cache.has("b@x", "pw", "hash1"), false);
  assert.equal(cache.has("a@x", "pw", "hash2"), false, "password changed elsewhere");
  assert.equal(cache.has("a@x", "pw", "hash1"), false, "a stale entry is dropped");
  assert.equal(cache.hits, 1);
});

test("user and password are separated: ('a', 'b\\0c') is not ('a\\0b', 'c')", () => {
  const cache = new CredentialCache();
  cache.put("a@x", "pw", "s");
  assert.equal(cache.has("a@x\0pw", "", "s"), false);
});

test("entries expire after the TTL (default 60 s)", () => {
  const clock = fakeClock();
  const cache = new CredentialCache({ now: clock.now });
  cache.put("a@x", "pw", "s");
  clock.advance(59_999);
  assert.equal(cache.has("a@x", "pw", "s"), true);
  clock.advance(1);
  assert.equal(cache.has("a@x", "pw", "s"), false);
  assert.equal(cache.size, 0);
});

test("invalidateUser drops every login of that user only", () => {
  const cache = new CredentialCache();
  cache.put("a@x", "pw1", "s");
  cache.put("a@x", "pw2", "s");
  cache.put("b@x", "pw", "s");
  cache.invalidateUser("a@x");
  assert.equal(cache.has("a@x", "pw1", "s"), false);
  assert.equal(cache.has("a@x", "pw2", "s"), false);
  assert.equal(cache.has("b@x", "pw", "s"), true);
});

test("least recently used entries go first when full", () => {
  const cache = new CredentialCache({ maxEntries: 2 });
  cache.put("a@x", "pw", "s");
  cache.put("b@x", "pw", "s");
  assert.equal(cache.has("a@x", "pw", "s"), true); // a is now the most recent
  cache.put("c@x", "pw", "s");
  assert.equal(cache.size, 2);
  assert.equal(cache.has("b@x", "pw", "s"), false);
  assert.equal(cache.has("a@x", "pw", "s"), true);
  assert.equal(cache.has("c@x", "pw", "s"), true);
});

test("ttl 0 disables caching", () => {
  const cache = new CredentialCache({ ttlMs: 0 });
  cache.put("a@x", "pw", "s");
  assert.equal(cache.has("a@x", "pw", "s"), false);
});
