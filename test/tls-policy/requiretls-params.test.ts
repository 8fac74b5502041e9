/**
 * REQUIRETLS on the receiving side, piece by piece (RFC 8689): the EHLO keyword (§2), the MAIL
 * parameter (§2 item 4: no value) and the TLS-Required: field as the intake's header reader sees
 * it (§3, §4.1).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { helloReply } from "../../src/smtp/ehlo.js";
import { parseMailParams, type MailParamsAllowed } from "../../src/smtp/esmtp-params.js";
import { HeaderCollector, type HeaderInfo } from "../../src/smtp/headers.js";
import { taggedTlsRequiredNo } from "../../src/smtp/tls-required-field.js";

const ALLOWED: MailParamsAllowed = { size: true, eightBitMime: true, smtputf8: true, dsn: true, auth: false, requireTls: true };
const OFFER = { hostname: "mx.example.org", remoteIp: "198.51.100.7", messageSize: 1000, startTls: false, mechanisms: [] };

test("EHLO lists REQUIRETLS only when offered, and HELO never", () => {
  assert.ok(helloReply("EHLO", "c.example", { ...OFFER, requireTls: true }).lines.includes("REQUIRETLS"));
  assert.ok(!helloReply("EHLO", "c.example", { ...OFFER, requireTls: false }).lines.includes("REQUIRETLS"));
  assert.ok(!helloReply("EHLO", "c.example", OFFER).lines.includes("REQUIRETLS"), "absent: not offered");
  assert.deepEqual(helloReply("HELO", "c.example", { ...OFFER, requireTls: true }).lines.length, 1);
});

test("MAIL REQUIRETLS: accepted without a value, in any case, beside other parameters", () => {
  assert.deepEqual(parseMailParams("REQUIRETLS", ALLOWED), { ok: true, value: { requireTls: true } });
  assert.deepEqual(parseMailParams("SIZE=10 requiretls BODY=8BITMIME", ALLOWED), {
    ok: true,
    value: { size: 10, requireTls: true, body: "8BITMIME" },
  });
});

test("MAIL REQUIRETLS: a value is a syntax error (501 5.5.4), a second one a duplicate", () => {
  for (const text of ["REQUIRETLS=YES", "REQUIRETLS=", "REQUIRETLS REQUIRETLS"]) {
    const r = parseMailParams(text, ALLOWED);
    assert.equal(r.ok, false, text);
    if (!r.ok) {
      assert.equal(r.reply.code, 501, text);
      assert.equal(r.reply.enhanced, "5.5.4", text);
    }
  }
});

test("MAIL REQUIRETLS where it was not offered is an unknown parameter (555 5.5.4)", () => {
  for (const allowed of [
    { ...ALLOWED, requireTls: false },
    { size: true, eightBitMime: true, smtputf8: true, dsn: true, auth: false },
  ]) {
    const r = parseMailParams("REQUIRETLS", allowed);
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.reply.code, 555);
      assert.equal(r.reply.enhanced, "5.5.4");
      assert.match(r.reply.lines[0]!, /REQUIRETLS/);
    }
  }
});

/** The header section as the intake reads it: the same collector, fed in small pieces. */
function headersOf(section: string): HeaderInfo {
  const collector = new HeaderCollector({ maxHeaderBytes: 64 * 1024 });
  let info: HeaderInfo | undefined;
  collector.setHeaderEndHook((i) => {
    info = i;
    return Buffer.alloc(0);
  });
  const bytes = Buffer.from(`${section}\r\nbody\r\n`, "utf8");
  for (let i = 0; i < bytes.length; i += 7) collector.push(bytes.subarray(i, i + 7));
  collector.finish();
  assert.ok(info, "the header section ended");
  return info;
}

test('TLS-Required: "No" tags the message: any case of name and value, folded, with white space', () => {
  const yes = [
    "TLS-Required: No",
    "tls-required: no",
    "TLS-REQUIRED:NO",
    "TLS-Required:\tNo  ",
    "TLS-Required:\r\n No",
    "Subject: x\r\nTLS-Required: No\r\nTo: a@b.test",
  ];
  for (const section of yes) assert.equal(taggedTlsRequiredNo(headersOf(section), false), true, JSON.stringify(section));
});

test("TLS-Required: other values, a second field, or no field leave the message untagged", () => {
  const no = [
    "Subject: x",
    "TLS-Required: Yes",
    "TLS-Required: No thanks",
    "TLS-Required: N o",
    "TLS-Required: No (please)",
    "TLS-Required:",
    "TLS-Required: No\r\nTLS-Required: No", // RFC 8689 §3: more than one MUST NOT appear
    "X-TLS-Required: No",
    "TLS-Required-X: No",
  ];
  for (const section of no) assert.equal(taggedTlsRequiredNo(headersOf(section), false), false, JSON.stringify(section));
});

test("with MAIL REQUIRETLS the TLS-Required field is ignored (RFC 8689 §4.1)", () => {
  assert.equal(taggedTlsRequiredNo(headersOf("TLS-Required: No"), true), false);
});
