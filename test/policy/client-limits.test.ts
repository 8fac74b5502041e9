/** Connection limits and the tarpit as pure decisions (the wiring is tested in test/server/limits.test.ts). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ClientLimits, tarpitDelayMs } from "../../src/policy/client-limits.js";

const base = { total: 1000, perIp: 50, ratePerIp: 0, rateWindowSec: 60, exempt: [] as string[] };

test("the 51st concurrent connection from one IP is refused with 421 4.7.0 (Postfix default 50); another IP still gets in", () => {
  const limits = new ClientLimits(base, "mx.test");
  const slots = Array.from({ length: 50 }, () => limits.admit("192.0.2.1"));
  assert.ok(slots.every((s) => s.ok));
  const refused = limits.admit("192.0.2.1");
  assert.equal(refused.ok, false);
  assert.ok(!refused.ok && refused.reason === "per-ip" && refused.reply.code === 421 && refused.reply.enhanced === "4.7.0");
  assert.ok(limits.admit("192.0.2.2").ok);
  assert.deepEqual(limits.snapshot().refused, { total: 0, "per-ip": 1, rate: 0 });
});

test("releasing a slot lets the client in again; a second release of the same slot changes nothing", () => {
  const limits = new ClientLimits({ ...base, perIp: 1 }, "mx.test");
  const a = limits.admit("192.0.2.1");
  assert.ok(a.ok);
  assert.equal(limits.admit("192.0.2.1").ok, false);
  a.release();
  a.release();
  assert.equal(limits.snapshot().connections, 0);
  assert.equal(limits.snapshot().clients, 0);
  const b = limits.admit("192.0.2.1");
  assert.ok(b.ok);
  assert.equal(limits.snapshot().connections, 1);
});

test("the total cap applies to everyone, exempt clients included", () => {
  const limits = new ClientLimits({ ...base, total: 2, exempt: ["127.0.0.0/8"] }, "mx.test");
  assert.ok(limits.admit("127.0.0.1").ok);
  assert.ok(limits.admit("192.0.2.1").ok);
  const r = limits.admit("127.0.0.1");
  assert.ok(!r.ok && r.reason === "total" && r.reply.code === 421);
});

test("connection rate per IP: off by default, counted in fixed windows when set, exempt CIDRs skip it", () => {
  let now = 0;
  const off = new ClientLimits(base, "mx.test", () => now);
  for (let i = 0; i < 200; i++) off.admit("192.0.2.1").ok && undefined;
  assert.equal(off.snapshot().refused.rate, 0);

  const limits = new ClientLimits({ ...base, perIp: 1000, ratePerIp: 3, rateWindowSec: 60, exempt: ["2001:db8::/32"] }, "mx.test", () => now);
  for (let i = 0; i < 3; i++) assert.ok(limits.admit("192.0.2.1").ok);
  const r = limits.admit("192.0.2.1");
  assert.ok(!r.ok && r.reason === "rate" && r.reply.enhanced === "4.7.0");
  for (let i = 0; i < 10; i++) assert.ok(limits.admit("2001:db8::1").ok, "exempt");
  now += 60_000;
  assert.ok(limits.admit("192.0.2.1").ok, "a new window");
});

test("exempt clients skip the per-IP concurrency limit (smtpd_client_event_limit_exceptions)", () => {
  const limits = new ClientLimits({ ...base, perIp: 1, exempt: ["198.51.100.0/24"] }, "mx.test");
  assert.ok(limits.admit("198.51.100.9").ok);
  const second = limits.admit("198.51.100.9");
  assert.ok(second.ok && second.exempt);
});

test("tarpit: no delay under the soft limit, then a delay that grows per error up to the maximum", () => {
  const t = { softErrors: 10, softJunk: 50, stepMs: 1000, maxDelayMs: 4000 };
  assert.equal(tarpitDelayMs(9, t.softErrors, t), 0);
  assert.equal(tarpitDelayMs(10, t.softErrors, t), 1000);
  assert.equal(tarpitDelayMs(11, t.softErrors, t), 2000);
  assert.equal(tarpitDelayMs(51, t.softJunk, t), 2000);
  assert.equal(tarpitDelayMs(30, t.softErrors, t), 4000);
});

test("IPv6 clients are limited per /64 (connections and rate); IPv4 per address; IPv4-mapped as IPv4 (docs/SECURITY.md 11.8)", () => {
  let now = 0;
  const limits = new ClientLimits({ ...base, perIp: 2 }, "mx.test", () => now);
  assert.ok(limits.admit("2001:db8:1:2::1").ok);
  assert.ok(limits.admit("2001:db8:1:2:aaaa::2").ok);
  const third = limits.admit("2001:db8:1:2:ffff:ffff:ffff:ffff");
  assert.ok(!third.ok && third.reason === "per-ip", "a third address of the same /64 is the same client");
  assert.ok(limits.admit("2001:db8:1:3::1").ok, "the next /64 is another client");
  assert.equal(limits.snapshot().clients, 2);

  assert.ok(limits.admit("192.0.2.1").ok);
  assert.ok(limits.admit("192.0.2.1").ok);
  assert.ok(limits.admit("192.0.2.2").ok, "IPv4: each address is its own client");
  assert.equal(limits.admit("::ffff:192.0.2.1").ok, false, "an IPv4-mapped address is the IPv4 client");

  const rate = new ClientLimits({ ...base, perIp: 1000, ratePerIp: 3 }, "mx.test", () => now);
  for (let i = 1; i <= 3; i++) assert.ok(rate.admit(`2001:db8:9:9::${i}`).ok);
  const r = rate.admit("2001:db8:9:9::4");
  assert.ok(!r.ok && r.reason === "rate", "rotating addresses does not reset the rate");
  now += 60_000;
  assert.ok(rate.admit("2001:db8:9:9::5").ok);
});

test("a connection released from one address of a /64 frees the /64's slot", () => {
  const limits = new ClientLimits({ ...base, perIp: 1 }, "mx.test");
  const a = limits.admit("2001:db8::1");
  assert.ok(a.ok);
  assert.equal(limits.admit("2001:db8::2").ok, false);
  a.release();
  assert.ok(limits.admit("2001:db8::2").ok);
  assert.equal(limits.snapshot().clients, 1);
});
