import { test } from "node:test";
import assert from "node:assert/strict";
import { parseEsmtpParams, parseMailParams, parseRcptParams, decodeXtext, encodeXtext, type MailParamsAllowed } from "../../src/smtp/address.js";

const ALL: MailParamsAllowed = { size: true, eightBitMime: true, smtputf8: true, dsn: true, auth: true };
const NONE: MailParamsAllowed = { size: false, eightBitMime: false, smtputf8: false, dsn: false, auth: false };

function mail(text: string, allowed = ALL) {
  const r = parseMailParams(text, allowed);
  return r.ok ? r.value : `${r.reply.code} ${r.reply.enhanced}`;
}
function rcpt(text: string, dsn = true) {
  const r = parseRcptParams(text, { dsn });
  return r.ok ? r.value : `${r.reply.code} ${r.reply.enhanced}`;
}

test("parseEsmtpParams splits keywords and values, upper-cases keywords", () => {
  assert.deepEqual(parseEsmtpParams("size=10  BODY=8bitmime SMTPUTF8"), {
    ok: true,
    value: [
      { keyword: "SIZE", value: "10" },
      { keyword: "BODY", value: "8bitmime" },
      { keyword: "SMTPUTF8", value: null },
    ],
  });
  assert.deepEqual(parseEsmtpParams(""), { ok: true, value: [] });
});

test("parseEsmtpParams refuses bad syntax with 501 5.5.4", () => {
  for (const text of ["=1", "-A=1", "A_B=1", "A=", "A=b=c", "A=\x01", "SIZ\u00e9=1"]) {
    const r = parseEsmtpParams(text);
    assert.ok(!r.ok, text);
    assert.deepEqual([r.reply.code, r.reply.enhanced], [501, "5.5.4"], text);
  }
});

test("the typed validators accept a parsed list too", () => {
  const list = parseEsmtpParams("SIZE=5");
  assert.ok(list.ok);
  assert.deepEqual(parseMailParams(list.value, ALL), { ok: true, value: { size: 5 } });
});

const mailCases: [string, unknown, MailParamsAllowed?][] = [
  ["", {}],
  ["SIZE=0", { size: 0 }],
  ["SIZE=10485760", { size: 10485760 }],
  ["size=00042", { size: 42 }],
  ["SIZE=12345678901234567890", { size: Number("12345678901234567890") }],
  ["SIZE=123456789012345678901", "501 5.5.4"], // RFC 1870: at most 20 digits
  ["SIZE=-1", "501 5.5.4"],
  ["SIZE=1e6", "501 5.5.4"],
  ["SIZE=0x10", "501 5.5.4"],
  ["SIZE", "501 5.5.4"],
  ["BODY=8BITMIME", { body: "8BITMIME" }],
  ["BODY=7bit", { body: "7BIT" }],
  ["BODY=BINARYMIME", "501 5.5.4"],
  ["BODY", "501 5.5.4"],
  ["SMTPUTF8", { smtputf8: true }],
  ["SMTPUTF8=yes", "501 5.5.4"],
  ["RET=FULL", { ret: "FULL" }],
  ["RET=hdrs", { ret: "HDRS" }],
  ["RET=ALL", "501 5.5.4"],
  ["ENVID=QQ314159", { envid: "QQ314159" }],
  ["ENVID=a+2Bb+3Dc", { envid: "a+b=c" }],
  ["ENVID=x+0D+0AQUIT", "501 5.5.4"],
  ["ENVID=x+0Dy", "501 5.5.4"],
  ["ENVID=x+00", "501 5.5.4"],
  ["ENVID=x+0d", "501 5.5.4"], // hex must be upper case (RFC 3461 §4)
  ["ENVID=x+4", "501 5.5.4"],
  ["ENVID=" + "a".repeat(100), { envid: "a".repeat(100) }],
  ["ENVID=" + "a".repeat(101), "501 5.5.4"],
  ["AUTH=<>", { auth: "<>" }],
  ["AUTH=user+40example.org", { auth: "user@example.org" }],
  ["AUTH=a+0Ab", "501 5.5.4"],
  [
    "SIZE=1 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id1 AUTH=<>",
    {
      size: 1,
      body: "8BITMIME",
      smtputf8: true,
      ret: "HDRS",
      envid: "id1",
      auth: "<>",
    },
  ],
  ["SIZE=1 SIZE=2", "501 5.5.4"],
  ["size=1 SIZE=1", "501 5.5.4"],
  ["FOO=bar", "555 5.5.4"],
  ["NOTIFY=NEVER", "555 5.5.4"], // a RCPT parameter on MAIL
  ["XVERP", "555 5.5.4"],
  ["SIZE=1", "555 5.5.4", NONE],
  ["BODY=8BITMIME", "555 5.5.4", NONE],
  ["SMTPUTF8", "555 5.5.4", NONE],
  ["RET=FULL", "555 5.5.4", NONE],
  ["ENVID=x", "555 5.5.4", NONE],
  ["AUTH=<>", "555 5.5.4", NONE],
];
for (const [text, expected, allowed] of mailCases) {
  test(`MAIL parameters ${JSON.stringify(text)}${allowed === NONE ? " (not advertised)" : ""}`, () => {
    assert.deepEqual(mail(text, allowed), expected);
  });
}

const rcptCases: [string, unknown, boolean?][] = [
  ["", {}],
  ["NOTIFY=NEVER", { notify: ["NEVER"] }],
  ["NOTIFY=SUCCESS,FAILURE", { notify: ["SUCCESS", "FAILURE"] }],
  ["notify=delay,success,failure", { notify: ["DELAY", "SUCCESS", "FAILURE"] }],
  ["NOTIFY=NEVER,SUCCESS", "501 5.5.4"], // RFC 3461 §4.1
  ["NOTIFY=FAILURE,NEVER", "501 5.5.4"],
  ["NOTIFY=SUCCESS,SUCCESS", "501 5.5.4"],
  ["NOTIFY=SUCCESS,", "501 5.5.4"],
  ["NOTIFY=ALWAYS", "501 5.5.4"],
  ["NOTIFY", "501 5.5.4"],
  ["ORCPT=rfc822;john@example.org", { orcpt: { addrType: "rfc822", address: "john@example.org" } }],
  ["ORCPT=RFC822;a+2Bb@example.org", { orcpt: { addrType: "RFC822", address: "a+b@example.org" } }],
  ["ORCPT=rfc822;x+0D+0ARCPT", "501 5.5.4"],
  ["ORCPT=rfc822;", "501 5.5.4"],
  ["ORCPT=john@example.org", "501 5.5.4"],
  ["ORCPT=;john@example.org", "501 5.5.4"],
  ["ORCPT=rfc822;a+ZZ", "501 5.5.4"],
  ["ORCPT=rfc822;" + "a".repeat(500), "501 5.5.4"],
  ["NOTIFY=NEVER NOTIFY=NEVER", "501 5.5.4"],
  ["NOTIFY=NEVER ORCPT=rfc822;a@b.example", { notify: ["NEVER"], orcpt: { addrType: "rfc822", address: "a@b.example" } }],
  ["SIZE=1", "555 5.5.4"],
  ["FOO", "555 5.5.4"],
  ["NOTIFY=NEVER", "555 5.5.4", false],
  ["ORCPT=rfc822;a@b.example", "555 5.5.4", false],
];
for (const [text, expected, dsn] of rcptCases) {
  test(`RCPT parameters ${JSON.stringify(text)}${dsn === false ? " (DSN not advertised)" : ""}`, () => {
    assert.deepEqual(rcpt(text, dsn ?? true), expected);
  });
}

test("unsupported-parameter replies name the (validated) keyword", () => {
  const r = parseMailParams("X-FOO=1", ALL);
  assert.ok(!r.ok);
  assert.deepEqual(r.reply.lines, ["Unsupported parameter: X-FOO"]);
});

test("xtext (RFC 3461 §4): decode, encode, round trip", () => {
  assert.equal(decodeXtext("abc+2B+3D"), "abc+=");
  assert.equal(decodeXtext("+0D+0A"), "\r\n", "decodeXtext itself keeps control characters; validators refuse them");
  assert.equal(decodeXtext(""), "");
  for (const bad of ["a b", "a=b", "+", "+0", "+0g", "+0d", "é", "+FF"]) assert.equal(decodeXtext(bad), null, bad);
  assert.equal(encodeXtext("a+b=c d\r\n"), "a+2Bb+3Dc+20d+0D+0A");
  assert.equal(encodeXtext("jöran"), "j+C3+B6ran");
  for (const s of ["", "plain", "with space", "+=+=", "ünïcødé", "\u0000\u007f~!"]) {
    assert.equal(decodeXtext(encodeXtext(s)), s, s);
  }
});
