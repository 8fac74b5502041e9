/** Cross-connection AUTH throttle: sliding window, lockouts per IP and per account+block, penalty, exempt. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { AuthThrottle, DEFAULT_AUTH_THROTTLE, networkBlock } from "../../src/policy/auth-throttle.js";

function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

test("past ipFailures in the window the IP is locked out for lockoutSec, and the lockout is reported once", () => {
  const c = clock();
  const th = new AuthThrottle({ ...DEFAULT_AUTH_THROTTLE, ipFailures: 3, lockoutSec: 60 }, [], c.now);
  assert.deepEqual(th.failed("192.0.2.1").locked, []);
  assert.deepEqual(th.failed("192.0.2.1").locked, []);
  assert.deepEqual(th.failed("192.0.2.1").locked, ["ip"]);
  assert.deepEqual(th.failed("192.0.2.1").locked, [], "already locked: not reported again");
  assert.deepEqual(th.checkIp("192.0.2.1"), { refused: true, scope: "ip", retryAfterSec: 60 });
  assert.equal(th.checkIp("192.0.2.2").refused, false, "other addresses are not affected");
  c.advance(61_000);
  assert.equal(th.checkIp("192.0.2.1").refused, false, "the lockout ends");
});

test("failures older than the window are forgotten (sliding window)", () => {
  const c = clock();
  const th = new AuthThrottle({ ...DEFAULT_AUTH_THROTTLE, ipFailures: 3, windowSec: 10 }, [], c.now);
  th.failed("192.0.2.1");
  th.failed("192.0.2.1");
  c.advance(11_000);
  th.failed("192.0.2.1");
  assert.equal(th.checkIp("192.0.2.1").refused, false);
});

test("an account locked from one network block can still log in from another (no lock-out everywhere)", () => {
  const c = clock();
  const th = new AuthThrottle({ ...DEFAULT_AUTH_THROTTLE, ipFailures: 100, accountFailures: 3 }, [], c.now);
  for (const ip of ["203.0.113.5", "203.0.113.9", "203.0.113.77"]) th.failed(ip, "john@example.org");
  assert.equal(th.checkAccount("203.0.113.200", "John@Example.org").refused, true, "same /24, any case");
  assert.equal(th.checkAccount("198.51.100.7", "john@example.org").refused, false, "another block");
  assert.equal(th.checkAccount("203.0.113.5", "mary@example.org").refused, false, "another account");
});

test("the per-IP penalty grows with each failure up to maxPenaltyMs (~15 s)", () => {
  const th = new AuthThrottle({ ...DEFAULT_AUTH_THROTTLE, ipFailures: 100 }, [], clock().now);
  const penalties = Array.from({ length: 8 }, () => th.failed("192.0.2.1").penaltyMs);
  assert.deepEqual(penalties, [0, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
});

test("exempt networks skip counters, lockouts and penalties", () => {
  const th = new AuthThrottle({ ...DEFAULT_AUTH_THROTTLE, ipFailures: 2 }, ["10.0.0.0/8"], clock().now);
  for (let i = 0; i < 5; i++) assert.equal(th.failed("10.1.2.3", "john@example.org").penaltyMs, 0);
  assert.equal(th.checkIp("10.1.2.3").refused, false);
  assert.equal(th.checkAccount("10.1.2.3", "john@example.org").refused, false);
});

test("a success forgets the account's failures from that block", () => {
  const th = new AuthThrottle({ ...DEFAULT_AUTH_THROTTLE, ipFailures: 100, accountFailures: 3 }, [], clock().now);
  th.failed("192.0.2.1", "john@example.org");
  th.failed("192.0.2.1", "john@example.org");
  th.succeeded("192.0.2.1", "john@example.org");
  th.failed("192.0.2.1", "john@example.org");
  assert.equal(th.checkAccount("192.0.2.1", "john@example.org").refused, false);
});

test("network blocks: IPv4 /24, IPv6 /64, IPv4-mapped addresses", () => {
  assert.equal(networkBlock("192.0.2.77", 24, 64), "192.0.2.0/24");
  assert.equal(networkBlock("2001:db8:1:2:3:4:5:6", 24, 64), "2001:db8:1:2:0:0:0:0/64");
  assert.equal(networkBlock("2001:db8::1", 24, 64), "2001:db8:0:0:0:0:0:0/64");
  const th = new AuthThrottle({ ...DEFAULT_AUTH_THROTTLE, ipFailures: 1 }, [], clock().now);
  th.failed("::ffff:192.0.2.1");
  assert.equal(th.checkIp("192.0.2.1").refused, true);
});
