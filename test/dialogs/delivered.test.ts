/** The `delivered` comparison: our trace fields on top, then exactly the expected bytes; patterns. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { contentMismatch } from "./delivered.js";

const TRACE =
  "Return-Path: <a@b.test>\r\nDelivered-To: john@example.org\r\nReceived: from c.test ([127.0.0.1])\r\n\tby mail.example.org (Postern) with ESMTP id Q1;\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\n";
const message = (text: string) => ({ message: Buffer.from(text, "latin1"), patterns: [] });

test("exactly the trace fields and the expected bytes: no mismatch", () => {
  assert.equal(contentMismatch(Buffer.from(TRACE + "Subject: x\r\n\r\nbody\r\n"), message("Subject: x\r\n\r\nbody\r\n")), null);
  assert.equal(contentMismatch(Buffer.from("Subject: x\r\n\r\nbody\r\n"), message("Subject: x\r\n\r\nbody\r\n")), null, "no trace fields is fine too");
});

test("changed bytes, a field that is not ours on top, or a lost header are mismatches", () => {
  assert.match(contentMismatch(Buffer.from(TRACE + "Subject: x\r\n\r\nbody\n"), message("Subject: x\r\n\r\nbody\r\n"))!, /does not end with/);
  assert.match(
    contentMismatch(Buffer.from(TRACE + "X-Added: 1\r\nSubject: x\r\n\r\nb\r\n"), message("Subject: x\r\n\r\nb\r\n"))!,
    /more than our trace fields/,
  );
  assert.match(
    contentMismatch(Buffer.from(TRACE + "Subject: x\r\n\r\nb\r\n"), message("b\r\n"))!,
    /more than our trace fields/,
    "the header section is not a trace field",
  );
});

test("patterns see the whole delivered message; a negated one must not match", () => {
  const bytes = Buffer.from(TRACE + "Subject: x\r\n\r\nb\r\n");
  assert.equal(contentMismatch(bytes, { message: null, patterns: [{ pattern: /^Return-Path: <a@b\.test>/, negated: false }] }), null);
  assert.match(contentMismatch(bytes, { message: null, patterns: [{ pattern: /Subject: y/, negated: false }] })!, /does not match/);
  assert.match(contentMismatch(bytes, { message: null, patterns: [{ pattern: /Subject: x/, negated: true }] })!, /matches/);
});
