/** Sender ownership (MAIL FROM and From:) and the address-list reader behind the From: check. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkEnvelopeSender, checkFromHeader, extractAddresses, ownsAddress } from "../../src/policy/sender.js";
import { NetworkList } from "../../src/policy/networks.js";
import { RelayPolicy } from "../../src/policy/relay.js";
import { createPolicyPorts, type AuthSource } from "../../src/policy/session-ports.js";
import type { MailPath } from "../../src/smtp/address.js";

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
  assert.equal(checkFromHeader(john, "John <john@example.org>", "john@example.org").allow, true);
  assert.equal(checkFromHeader(john, '"ceo@example.org" <john@example.org>', "john@example.org").allow, true);
  assert.equal(checkFromHeader(john, "john@example.org, ceo@example.org", "john@example.org").allow, false);
  assert.equal(checkFromHeader(john, "CEO <ceo@example.org> (john@example.org)", "john@example.org").allow, false);
  assert.equal(checkFromHeader(john, "undisclosed", "john@example.org").allow, false);
  assert.equal(checkFromHeader(john, undefined, "john@example.org").allow, true);
});

test("null sender (MAIL FROM:<>) from a normal account: allowed only with a From: the account owns — never without one", () => {
  assert.equal(checkEnvelopeSender(john, "").allow, true, "MAIL FROM:<> itself passes: the From: decides at the end of DATA");
  assert.equal(checkFromHeader(john, "John <john@example.org>", "").allow, true, "a read receipt or vacation reply of its own");
  const missing = checkFromHeader(john, undefined, "");
  assert.equal(missing.allow, false, "a null-sender message must say who sent it");
  if (!missing.allow) assert.equal(`${missing.reply.code} ${missing.reply.enhanced}`, "553 5.7.1");
  const report = checkFromHeader(john, "MAILER-DAEMON@example.net (Mail Delivery System)", "");
  assert.equal(report.allow, true, "@example.net is john's, so that domain's MAILER-DAEMON is too");
  const foreign = checkFromHeader(john, "MAILER-DAEMON@host.example.net (Mail Delivery System)", "");
  assert.equal(foreign.allow, false, "a host under a listed domain is not a normal account's");
  if (!foreign.allow) assert.match(foreign.reply.lines[0]!, /relay-client account/, "the refusal tells the admin what to do");
});

test("relay client (issue 12): its @domain entries cover the hosts under them, in MAIL FROM and From:, and its null-sender reports pass", () => {
  const relay = { address: "relay@example.org", senders: ["@example.org"], relayClient: true };
  const normal = { ...relay, relayClient: false };
  const table: [string, boolean][] = [
    ["anyone@example.org", true],
    ["root@host.example.org", true], // cron mail: Postfix's myorigin is its host name by default
    ["MAILER-DAEMON@host.example.org", true],
    ["postmaster@a.b.example.org", true],
    ["x@evilexample.org", false], // a label boundary, not a string suffix
    ["x@example.org.evil.test", false],
    ["x@example.net", false],
  ];
  for (const [address, owned] of table) {
    assert.equal(ownsAddress(relay, address), owned, address);
    assert.equal(checkEnvelopeSender(relay, address).allow, owned, `MAIL FROM ${address}`);
  }
  const postfixBounce = "MAILER-DAEMON@host.example.org (Mail Delivery System)";
  assert.equal(checkFromHeader(relay, postfixBounce, "").allow, true, "Postfix's DSN through the relay client");
  assert.equal(checkFromHeader(normal, postfixBounce, "").allow, false, "the same report through a normal account");
  assert.equal(ownsAddress(normal, "root@host.example.org"), false);
  assert.equal(checkFromHeader(relay, undefined, "").allow, false, "a relay client's null-sender mail still needs a From:");
});

test("sub-addressing follows aliases.recipientDelimiter, as the aliases do (issue 13): '-' makes john-lists john's, '' turns it off", () => {
  const table: [string, string, boolean][] = [
    ["-", "john-lists@example.org", true],
    ["-", "John-Lists@Example.ORG", true],
    ["-", "john+lists@example.org", false],
    ["-", "sales-x@example.org", true],
    ["-", "johnny@example.org", false],
    ["", "john+lists@example.org", false],
    ["", "john@example.org", true],
    ["+", "john+lists@example.org", true],
  ];
  for (const [delimiter, address, owned] of table) {
    assert.equal(ownsAddress(john, address, delimiter), owned, `${JSON.stringify(delimiter)} ${address}`);
    assert.equal(checkEnvelopeSender(john, address, delimiter).allow, owned, `MAIL FROM ${address} with ${JSON.stringify(delimiter)}`);
    assert.equal(checkFromHeader(john, `<${address}>`, "", delimiter).allow, owned, `From: ${address} with ${JSON.stringify(delimiter)}`);
  }
});

test("the session's sender and From: checks take the delimiter from the policy setup the server builds", async () => {
  const ports = createPolicyPorts({
    relay: new RelayPolicy({ localDomains: ["example.org"], localAddressLiterals: [], mynetworks: new NetworkList([]), localMailbox: async () => null }),
    auth: { verifier: {} as AuthSource["verifier"], mechanisms: () => [], createMechanism: () => null, account: async () => null },
    hostname: "mx.example.org",
    authzidAdmins: [],
    recipientDelimiter: "-",
  })({ remoteIp: "192.0.2.1", log: { info: () => undefined, warn: () => undefined } });
  const ctx = { ip: "192.0.2.1", mode: "submission" as const, authUser: "john@example.org" };
  const path = (address: string): MailPath => {
    const [localPart, domain] = address.split("@") as [string, string];
    return { address, localPart, domain, domainAscii: domain, isNull: false, sourceRoute: false, domainIsLiteral: false, barePostmaster: false, utf8: false };
  };
  assert.equal((await ports.checkSender(ctx, path("john-lists@example.org"), john)).allow, true);
  assert.equal((await ports.checkSender(ctx, path("john+lists@example.org"), john)).allow, false);
  assert.equal(ports.checkFromHeader(john, "<john-lists@example.org>", "john@example.org").allow, true);
  assert.equal(ports.checkFromHeader(john, "<john+lists@example.org>", "john@example.org").allow, false);
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
