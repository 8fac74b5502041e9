import { test } from "node:test";
import assert from "node:assert/strict";
import { describeReply, parseEhloReply, ReplyParser, SmtpProtocolError } from "../../src/delivery/smtp-reply.js";

const b = (s: string) => Buffer.from(s);

test("single and multi-line replies, enhanced codes stripped from every line", () => {
  const p = new ReplyParser();
  const [r1, r2, r3] = p.push(b("220 mx.example ESMTP\r\n550-5.1.1 No such\r\n550 5.1.1 user here\r\n250\r\n"));
  assert.deepEqual(r1, { code: 220, enhanced: undefined, lines: ["mx.example ESMTP"], text: "mx.example ESMTP" });
  assert.deepEqual(r2, { code: 550, enhanced: "5.1.1", lines: ["No such", "user here"], text: "No such user here" });
  assert.equal(describeReply(r2), "550 5.1.1 No such user here");
  assert.deepEqual(r3, { code: 250, enhanced: undefined, lines: [""], text: "" });
});

test("replies split across reads at any byte", () => {
  const wire = "250-mx.example\r\n250-PIPELINING\r\n250 OK\r\n";
  for (let cut = 0; cut <= wire.length; cut++) {
    const p = new ReplyParser();
    const replies = [...p.push(b(wire.slice(0, cut))), ...p.push(b(wire.slice(cut)))];
    assert.equal(replies.length, 1);
    assert.deepEqual(replies[0].lines, ["mx.example", "PIPELINING", "OK"]);
    assert.ok(!p.hasPartial);
  }
});

test("enhanced code only when its class matches the reply code (RFC 3463 §3.1)", () => {
  const [r] = new ReplyParser().push(b("451 5.1.1 mismatched\r\n"));
  assert.equal(r.enhanced, undefined);
  assert.equal(r.text, "5.1.1 mismatched");
});

test("strict: bare LF, bare CR, garbage, code change and endless lines are protocol errors", () => {
  for (const bad of ["250 ok\n", "250 o\rk\r\n", "hello\r\n", "250-a\r\n251 b\r\n", "099 x\r\n", "\r\n", "25 x\r\n"]) {
    assert.throws(() => new ReplyParser().push(b(bad)), SmtpProtocolError, JSON.stringify(bad));
  }
  assert.throws(() => new ReplyParser(100).push(b("250 " + "x".repeat(200))), /too long/);
  assert.throws(() => new ReplyParser(100, 3).push(b("250-a\r\n250-b\r\n250-c\r\n250-d\r\n")), /too many lines/);
});

test("EHLO keywords: SIZE, PIPELINING, STARTTLS, AUTH (and old AUTH=), 8BITMIME, SMTPUTF8, DSN", () => {
  const [r] = new ReplyParser().push(
    b(
      "250-mx.example hi\r\n250-SIZE 1000\r\n250-pipelining\r\n250-STARTTLS\r\n250-AUTH PLAIN login\r\n250-AUTH=CRAM-MD5\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n",
    ),
  );
  const caps = parseEhloReply(r);
  assert.equal(caps.size, true);
  assert.equal(caps.sizeLimit, 1000);
  assert.ok(caps.pipelining && caps.starttls && caps.eightBitMime && caps.smtputf8 && caps.dsn && caps.enhancedStatusCodes);
  assert.deepEqual(caps.auth, ["PLAIN", "LOGIN", "CRAM-MD5"]);
  const [r0] = new ReplyParser().push(b("250-mx\r\n250 SIZE 0\r\n"));
  assert.equal(parseEhloReply(r0).sizeLimit, undefined, "SIZE 0 means no fixed limit");
});
