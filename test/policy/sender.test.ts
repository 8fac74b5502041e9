/** Sender ownership (MAIL FROM and From:) and the address-list reader behind the From: check. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkEnvelopeSender, checkFromHeader, extractAddresses, ownsAddress } from "../../src/policy/sender.js";
import { NetworkList } from "../../src/policy/networks.js";

const john = { address: "john@example.org", senders: ["sales@example.org", "@example.net"] };

test("a user owns its address, +detail forms, listed senders and listed domains — nothing else", () => {
  const table: [string, boolean][] = [
    ["john@example.org", true],
    ["John@Example.ORG", true],
    ["john+lists@example.org", true],
    ["sales@example.org", true],
    ["anyone@example.net", true],
    ["johnny@example.org", false],
    ["john@example.org.evil.test", false],
    ["john@evil.test", false],
    ["ceo@example.org", false],
    ["sales+x@example.org", true],
    ["nodomain", false],
  ];
  for (const [address, owned] of table) assert.equal(ownsAddress(john, address), owned, address);
});

test("MAIL FROM: the null sender is allowed, a foreign sender gets 553 5.7.1", () => {
  assert.equal(checkEnvelopeSender(john, "").allow, true);
  const d = checkEnvelopeSender(john, "ceo@example.org");
  assert.equal(d.allow, false);
  if (!d.allow) {
    assert.equal(d.reply.code, 553);
    assert.equal(d.reply.enhanced, "5.7.1");
  }
});

test("From: every address in the header must be owned; quoted display names cannot hide one", () => {
  assert.equal(checkFromHeader(john, "John <john@example.org>").allow, true);
  assert.equal(checkFromHeader(john, '"ceo@example.org" <john@example.org>').allow, true);
  assert.equal(checkFromHeader(john, "john@example.org, ceo@example.org").allow, false);
  assert.equal(checkFromHeader(john, "CEO <ceo@example.org> (john@example.org)").allow, false);
  assert.equal(checkFromHeader(john, "undisclosed").allow, false);
  assert.equal(checkFromHeader(john, undefined).allow, true);
});

test("extractAddresses reads RFC 5322 address lists", () => {
  assert.deepEqual(extractAddresses('"Doe, Jane" <jane@x.test>, bob@y.test (Bob)'), ["jane@x.test", "bob@y.test"]);
  assert.deepEqual(extractAddresses("Team: a@x.test, b@y.test;"), ["a@x.test", "b@y.test"]);
});

test("NetworkList matches IPv4, IPv6, CIDRs and IPv4-mapped IPv6 clients", () => {
  const nets = new NetworkList(["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]);
  assert.equal(nets.contains("192.0.2.200"), true);
  assert.equal(nets.contains("::ffff:192.0.2.1"), true);
  assert.equal(nets.contains("192.0.3.1"), false);
  assert.equal(nets.contains("2001:db8:1::5"), true);
  assert.equal(nets.contains("2001:db9::1"), false);
  assert.equal(nets.contains("198.51.100.7"), true);
  assert.equal(nets.contains("198.51.100.8"), false);
  assert.equal(nets.contains("not-an-ip"), false);
  assert.equal(new NetworkList([]).contains("127.0.0.1"), false);
});
