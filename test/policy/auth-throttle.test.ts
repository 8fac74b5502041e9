/** Cross-connection AUTH throttle: sliding window, lockouts per IP and per account+block, penalty, exempt. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { AuthThrottle, clientKey, DEFAULT_AUTH_THROTTLE, networkBlock } from "../../src/policy/auth-throttle.js";

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

test("clientKey: IPv4 as it is, IPv4-mapped IPv6 as its IPv4 address, IPv6 as its /64 (11.8)", () => {
  assert.equal(clientKey("192.0.2.77"), "192.0.2.77");
  assert.equal(clientKey("::ffff:192.0.2.77"), "192.0.2.77");
  assert.equal(clientKey("::FFFF:c000:024d"), "192.0.2.77", "the hex spelling of a mapped address too");
  assert.equal(clientKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2:0:0:0:0/64");
  assert.equal(clientKey("2001:db8:1:2::1"), clientKey("2001:DB8:1:2:ffff:ffff:ffff:ffff"));
  assert.equal(clientKey("fe80::1%eth0"), "fe80:0:0:0:0:0:0:0/64", "a zone id is not part of the address");
  assert.equal(clientKey("64:ff9b::192.0.2.1"), "64:ff9b:0:0:0:0:0:0/64", "a dotted IPv4 tail inside IPv6");
  assert.notEqual(clientKey("2001:db8:1:2::1"), clientKey("2001:db8:1:3::1"));
  assert.equal(networkBlock("2001:db8:1:2:3:4:5:6", 24, 48), "2001:db8:1:0:0:0:0:0/48");
  assert.equal(networkBlock("2001:db8:1:2:3:4:5:6", 24, 56), "2001:db8:1:0:0:0:0:0/56");
  assert.equal(networkBlock("2001:db8:1:2ff:3:4:5:6", 24, 56), "2001:db8:1:200:0:0:0:0/56");
});

test("IPv6 clients are counted per /64: addresses rotated inside one /64 are one client, the next /64 is another (11.8)", () => {
  const th = new AuthThrottle({ ...DEFAULT_AUTH_THROTTLE, ipFailures: 3, penaltyBaseMs: 1000 }, [], clock().now);
  assert.equal(th.failed("2001:db8:1:2::a").penaltyMs, 0);
  assert.equal(th.failed("2001:db8:1:2:dead:beef:0:1").penaltyMs, 1000, "the penalty grows across the /64");
  assert.deepEqual(th.failed("2001:db8:1:2::c").locked, ["ip"]);
  assert.deepEqual(th.checkIp("2001:db8:1:2:ffff:ffff:ffff:ffff"), { refused: true, scope: "ip", retryAfterSec: DEFAULT_AUTH_THROTTLE.lockoutSec });
  assert.equal(th.checkIp("2001:db8:1:3::a").refused, false, "the neighbouring /64");

  // IPv4 stays per address: three addresses of one /24 are three clients.
  for (const ip of ["192.0.2.1", "192.0.2.2", "192.0.2.3"]) th.failed(ip);
  assert.equal(th.checkIp("192.0.2.4").refused, false);
  for (let i = 0; i < 3; i++) th.failed("::ffff:198.51.100.9");
  assert.equal(th.checkIp("198.51.100.9").refused, true, "IPv4-mapped failures count for the IPv4 address");
});
