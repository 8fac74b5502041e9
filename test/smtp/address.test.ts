import { test } from "node:test";
import assert from "node:assert/strict";
import { parsePath, parseDomain, type PathOptions, type MailPath } from "../../src/smtp/address.js";

const RCPT: PathOptions = { allowNull: false, allowUtf8: false, role: "recipient" };
const MAIL: PathOptions = { allowNull: true, allowUtf8: false, role: "sender" };
const UTF8: PathOptions = { allowNull: false, allowUtf8: true, role: "recipient" };

function ok(text: string, opts: PathOptions = RCPT): MailPath {
  const r = parsePath(text, opts);
  assert.ok(r.ok, `${text} should parse, got ${JSON.stringify(r)}`);
  return r.path;
}
function refusal(text: string, opts: PathOptions = RCPT): string {
  const r = parsePath(text, opts);
  assert.ok(!r.ok, `${text} should be refused`);
  return `${r.reply.code} ${r.reply.enhanced}`;
}

test("null sender <> is accepted only where allowed", () => {
  const p = ok("<>", MAIL);
  assert.deepEqual([p.isNull, p.address, p.domain], [true, "", ""]);
  assert.equal(refusal("<>", RCPT), "501 5.1.3");
});

const accepted: [string, string, Partial<MailPath>?][] = [
  ["<user@example.org>", "user@example.org"],
  ["<User.Name@Example.ORG>", "User.Name@example.org", { localPart: "User.Name", domain: "example.org" }],
  ["<user@example.org.>", "user@example.org"],
  ["<a+tag@example.org>", "a+tag@example.org"],
  ["<user%other.example@example.org>", "user%other.example@example.org", { domain: "example.org" }],
  ["<host!user@example.org>", "host!user@example.org", { domain: "example.org" }],
  ["<{~`'*/=?^_|}@example.org>", "{~`'*/=?^_|}@example.org"],
  ['<"john smith"@example.org>', '"john smith"@example.org'],
  ['<"john"@example.org>', "john@example.org", { localPart: "john" }],
  ['<"a.b"@example.org>', "a.b@example.org"],
  ['<"a\\"b"@example.org>', '"a\\"b"@example.org'],
  ['<"a\\b"@example.org>', "ab@example.org"],
  ['<"a..b"@example.org>', '"a..b"@example.org'],
  ['<"(not a comment)"@example.org>', '"(not a comment)"@example.org'],
  ["<user@[192.0.2.1]>", "user@[192.0.2.1]", { domainIsLiteral: true, domain: "[192.0.2.1]" }],
  ["<user@[IPv6:2001:DB8::1]>", "user@[IPv6:2001:db8::1]", { domainIsLiteral: true }],
  ["<user@[ipv6:::ffff:192.0.2.1]>", "user@[IPv6:::ffff:192.0.2.1]", { domainIsLiteral: true }],
  ["<@relay1.example,@relay2.example:user@final.example>", "user@final.example", { sourceRoute: true, domain: "final.example" }],
  ["<@relay.example:user@final.example>", "user@final.example", { sourceRoute: true }],
  ["<xn--bcher-kva.de@xn--bcher-kva.de>", "xn--bcher-kva.de@xn--bcher-kva.de", { utf8: false }],
];
for (const [text, address, extra] of accepted) {
  test(`path ${text}`, () => {
    const p = ok(text);
    assert.equal(p.address, address);
    assert.equal(p.isNull, false);
    for (const [k, v] of Object.entries(extra ?? {})) assert.deepEqual(p[k as keyof MailPath], v, k);
  });
}

test("source routes are flagged and stripped to the final hop (SECURITY rule 7)", () => {
  const p = ok("<@a.example,@b.example:c@d.example>");
  assert.deepEqual([p.address, p.localPart, p.domain, p.sourceRoute], ["c@d.example", "c", "d.example", true]);
  assert.equal(ok("<c@d.example>").sourceRoute, false);
});

test("RCPT TO:<Postmaster> without a domain is accepted for recipients only (§4.1.1.3)", () => {
  const p = ok("<Postmaster>");
  assert.deepEqual([p.address, p.domain, p.barePostmaster], ["Postmaster", "", true]);
  assert.equal(ok("<postmaster>").barePostmaster, true);
  assert.equal(refusal("<postmaster>", MAIL), "501 5.1.7");
  assert.equal(refusal("<@a.example:postmaster>"), "501 5.1.3");
  assert.equal(ok("<postmaster@example.org>").barePostmaster, false);
});

const refusedRcpt: [string, string][] = [
  ['<"a@b"@example.org>', "quoted local part holding @"],
  ['<"a\\@b"@example.org>', "quoted local part holding an escaped @"],
  ["<a@b@example.org>", "a second @"],
  ["<a(comment)@example.org>", "comment"],
  ["<(comment)a@example.org>", "leading comment"],
  ["<a@example.org(comment)>", "comment in the domain"],
  ['<"abc@example.org>', "unbalanced quote"],
  ['<abc"@example.org>', "stray quote"],
  ['<"abc\\"@example.org>', "quote escaped away"],
  ["<@example.org>", "empty local part"],
  ['<""@example.org>', "empty quoted local part"],
  ["<.a@example.org>", "leading dot"],
  ["<a.@example.org>", "trailing dot in local part"],
  ["<a..b@example.org>", "double dot"],
  ["<a b@example.org>", "space outside quotes"],
  ["<a\tb@example.org>", "control character"],
  ['<"a\tb"@example.org>', "control character in quotes"],
  ['<"a\\\tb"@example.org>', "quoted-pair of a control character"],
  ["<a\u0000@example.org>", "NUL"],
  ["<a@>", "empty domain"],
  ["<a@.>", "domain of just a dot"],
  ["<a@example.org..>", "two trailing dots"],
  ["<a@-example.org>", "label starting with a hyphen"],
  ["<a@example-.org>", "label ending with a hyphen"],
  ["<a@exa_mple.org>", "underscore"],
  ["<a@example..org>", "empty label"],
  ["<a@[192.0.2.256]>", "bad IPv4 literal"],
  ["<a@[01.2.3.4]>", "IPv4 literal with a leading zero"],
  ["<a@[IPv6:1::2::3]>", "bad IPv6 literal"],
  ["<a@[IPv6:fe80::1%eth0]>", "IPv6 zone id"],
  ["<a@[2001:db8::1]>", "IPv6 literal without its tag"],
  ["<a@[x-tag:stuff]>", "general address literal"],
  ["<a@[192.0.2.1>", "unclosed literal"],
  ["<@[192.0.2.1]:a@example.org>", "literal in a source route"],
  ["<@a.example:>", "source route without a mailbox"],
  ["<@a.example,b.example:c@d.example>", "source route hop without @"],
  ["<@a.example>", "source route without a colon"],
  ["a@example.org", "no angle brackets"],
  ["<a@example.org", "no closing bracket"],
  ["<a>", "no domain (not Postmaster)"],
  ["<a@example.org> ", "text after the path"],
];
for (const [text, why] of refusedRcpt) {
  test(`path refused: ${why}`, () => {
    assert.equal(refusal(text), "501 5.1.3");
  });
}

test("sender refusals use 5.1.7, recipient refusals 5.1.3", () => {
  assert.equal(refusal("<a@b@example.org>", MAIL), "501 5.1.7");
  assert.equal(refusal("<a@b@example.org>", RCPT), "501 5.1.3");
  assert.equal(refusal("<a@b@example.org>", { allowNull: false, allowUtf8: false }), "501 5.1.3");
});

test("length limits (§4.5.3.1): local part 64 octets, domain label 63, domain 255, path 256", () => {
  ok(`<${"a".repeat(64)}@example.org>`);
  assert.equal(refusal(`<${"a".repeat(65)}@example.org>`), "501 5.1.3");
  ok(`<a@${"b".repeat(63)}.org>`);
  assert.equal(refusal(`<a@${"b".repeat(64)}.org>`), "501 5.1.3");
  const label = "c".repeat(60);
  const domain = [label, label, label, "d".repeat(50)].join("."); // 233 octets
  ok(`<a@${domain}>`);
  assert.equal(parseDomain([label, label, label, label, "e".repeat(12)].join("."), { allowUtf8: false, allowLiteral: false }), null, "256-octet domain");
  const path = `<${"a".repeat(64)}@${[label, label, "d".repeat(60), "e".repeat(63)].join(".")}>`;
  assert.ok(Buffer.byteLength(path) > 256);
  assert.equal(refusal(path), "501 5.1.3");
});

test("UTF-8 addresses: accepted with allowUtf8 (RFC 6531), 553 5.6.7 without", () => {
  const p = ok("<jöran@bücher.de>", UTF8);
  assert.deepEqual([p.address, p.domain, p.domainAscii, p.utf8], ["jöran@bücher.de", "bücher.de", "xn--bcher-kva.de", true]);
  assert.equal(ok("<用户@例え.テスト>", UTF8).domainAscii, "xn--r8jz45g.xn--zckzah"); // IANA IDN test domain
  assert.equal(ok('<"jö ran"@example.org>', UTF8).localPart, '"jö ran"');
  assert.equal(ok("<a@BÜCHER.de>", UTF8).domain, "bücher.de");
  assert.equal(refusal("<jöran@example.org>", RCPT), "553 5.6.7");
  assert.equal(refusal("<a@bücher.de>", MAIL), "553 5.6.7");
  // Not an address even with UTF-8 allowed: the syntax error wins over 5.6.7.
  assert.equal(refusal("<jö@ran@example.org>", RCPT), "501 5.1.3");
});

test("UTF-8 domains that IDNA would silently remap are refused", () => {
  for (const domain of ["ｅxample.org", "a\u3002example.org", "ex\u00adample.org", "exa\u200dmple.org"]) {
    assert.equal(refusal(`<a@${domain}>`, UTF8), "501 5.1.3", JSON.stringify(domain));
  }
  assert.equal(refusal("<a\u0085b@example.org>", UTF8), "501 5.1.3", "C1 control");
});

test("local part length is counted in octets, not characters", () => {
  assert.equal(refusal(`<${"é".repeat(33)}@example.org>`, UTF8), "501 5.1.3");
  ok(`<${"é".repeat(32)}@example.org>`, UTF8);
});
