/**
 * MX resolution (RFC 5321 §5.1, RFC 7505) against a real DNS server on 127.0.0.1.
 */
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { MxResolver } from "../../src/delivery/mx.js";
import { startDnsServer, type DnsServer } from "./helpers/dns-server.js";

let dns: DnsServer;

before(async () => {
  dns = await startDnsServer({
    "pref.test": {
      MX: [
        { preference: 20, exchange: "backup.pref.test" },
        { preference: 10, exchange: "primary.pref.test" },
      ],
    },
    "primary.pref.test": { A: ["127.0.0.1"] },
    "backup.pref.test": { A: ["127.0.0.1"], AAAA: ["2001:db8::25"] },
    "equal.test": {
      MX: [
        { preference: 10, exchange: "a.equal.test" },
        { preference: 10, exchange: "b.equal.test" },
        { preference: 10, exchange: "c.equal.test" },
      ],
    },
    "a.equal.test": { A: ["127.0.0.1"] },
    "b.equal.test": { A: ["127.0.0.1"] },
    "c.equal.test": { A: ["127.0.0.1"] },
    "nomx.test": { A: ["127.0.0.1"] },
    "nothing.test": {},
    "null.test": { MX: [{ preference: 0, exchange: "." }] },
    "loop.test": { MX: [{ preference: 10, exchange: "mail.postern.test" }] },
    "loopback.test": {
      MX: [
        { preference: 5, exchange: "other.loopback.test" },
        { preference: 10, exchange: "mail.postern.test" },
        { preference: 20, exchange: "third.loopback.test" },
      ],
    },
    "other.loopback.test": { A: ["127.0.0.1"] },
    "third.loopback.test": { A: ["127.0.0.1"] },
    "mail.postern.test": { A: ["127.0.0.1"] },
    "ownaddr.test": { MX: [{ preference: 10, exchange: "alias-of-us.test" }] },
    "alias-of-us.test": { A: ["192.0.2.25"] },
    "broken.test": { servfail: true },
    "halfbroken.test": {
      MX: [
        { preference: 10, exchange: "broken.test" },
        { preference: 20, exchange: "primary.pref.test" },
      ],
    },
  });
});
after(() => dns.close());

const resolver = (random?: () => number) =>
  new MxResolver({ servers: [dns.address], timeoutMs: 2000, ownNames: ["mail.postern.test"], ownAddresses: ["192.0.2.25"], random });

test("MX hosts are tried by preference, lowest first, with their A and AAAA addresses", async () => {
  const r = await resolver().resolve("PREF.test.");
  assert.ok(r.ok);
  assert.deepEqual(
    r.hosts.map((h) => [h.name, h.preference, h.addresses]),
    [
      ["primary.pref.test", 10, ["127.0.0.1"]],
      ["backup.pref.test", 20, ["127.0.0.1", "2001:db8::25"]],
    ],
  );
  assert.equal(r.implicit, false);
  assert.ok(dns.queries.includes("pref.test MX"), "the query went to our DNS server");
});

test("equal preferences come in random order (RFC 5321 §5.1)", async () => {
  const orders = new Set<string>();
  for (let i = 0; i < 30; i++) {
    const r = await resolver().resolve("equal.test");
    assert.ok(r.ok);
    assert.equal(r.hosts.length, 3);
    orders.add(r.hosts.map((h) => h.name[0]).join(""));
  }
  // 30 draws of 6 equally likely orders: fewer than 3 distinct ones has odds below 1e-9.
  assert.ok(orders.size >= 3, `several orders seen: ${[...orders].join(" ")}`);
});

test("no MX: the domain's own address is the implicit MX", async () => {
  const r = await resolver().resolve("nomx.test");
  assert.ok(r.ok);
  assert.deepEqual(r.hosts, [{ name: "nomx.test", preference: 0, addresses: ["127.0.0.1"] }]);
  assert.equal(r.implicit, true);
});

test("null MX (RFC 7505) fails at once with 556 5.1.10", async () => {
  const r = await resolver().resolve("null.test");
  assert.deepEqual(r.ok ? null : [r.outcome, r.detail.slice(0, 10)], ["failed", "556 5.1.10"]);
});

test("a domain that does not exist fails (5.1.2); one without MX or address fails too", async () => {
  for (const d of ["nonexistent.test", "nothing.test"]) {
    const r = await resolver().resolve(d);
    assert.ok(!r.ok);
    assert.equal(r.outcome, "failed");
    assert.match(r.detail, /^550 5\.1\.2 /);
  }
});

test("an MX that is ourselves (by name or address) is a loop: 5.4.6 when nothing better remains", async () => {
  for (const d of ["loop.test", "ownaddr.test"]) {
    const r = await resolver().resolve(d);
    assert.ok(!r.ok, d);
    assert.equal(r.outcome, "failed");
    assert.match(r.detail, /^554 5\.4\.6 mail for .* loops back to myself/);
  }
});

test("our own MX entry drops itself and every less preferred host, keeping the more preferred", async () => {
  const r = await resolver().resolve("loopback.test");
  assert.ok(r.ok);
  assert.deepEqual(
    r.hosts.map((h) => h.name),
    ["other.loopback.test"],
  );
});

test("a DNS server failure defers (4.4.3); one broken MX host is skipped", async () => {
  const r = await resolver().resolve("broken.test");
  assert.ok(!r.ok);
  assert.equal(r.outcome, "deferred");
  assert.match(r.detail, /^451 4\.4\.3 /);
  const half = await resolver().resolve("halfbroken.test");
  assert.ok(half.ok);
  assert.deepEqual(
    half.hosts.map((h) => h.name),
    ["primary.pref.test"],
  );
});
