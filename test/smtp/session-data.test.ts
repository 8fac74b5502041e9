/**
 * DATA through the session: the message reaches the spool exactly once with the right bytes however
 * the socket splits it, and every refusal (bare line ends, size, line length, spool failures)
 * aborts the spool file instead of committing it (SECURITY rules 1 and 16).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { HELO_NAME, CLIENT_IP, HOST, TLS, codes, ready, type HarnessOptions } from "./session-helpers.js";

const MTA: HarnessOptions = { mode: "mta" };

const MESSAGE = "Subject: split\r\nFrom: Alice <alice@example.org>\r\n\r\nline one\r\n..dot-stuffed\r\n\r\n.\r\n";
const STORED_BODY = "Subject: split\r\nFrom: Alice <alice@example.org>\r\n\r\nline one\r\n.dot-stuffed\r\n\r\n";
const received = (id: string, protocol = "ESMTP") =>
  `Received: from ${HELO_NAME} ([${CLIENT_IP}])\r\n\tby ${HOST} (Postern) with ${protocol} id ${id}\r\n\tfor <bob@example.org>;\r\n\tWed, 4 Mar 2026 05:06:07 +0000\r\n`;

/** One message through an unauthenticated mta session, fed in the given pieces. */
async function deliverInPieces(pieces: Buffer[]) {
  const h = await ready(MTA);
  const spool = await h.toData({ from: "alice@example.org", to: ["bob@example.org"] });
  const result = await h.feed(pieces);
  return { h, spool, ...result };
}

// ---- framing --------------------------------------------------------------------------------------

test("DATA split at every byte position: exactly one commit, the same bytes, the same rest", async () => {
  const stream = Buffer.from(MESSAGE + "QUIT\r\n");
  for (let i = 0; i <= stream.length; i++) {
    const { h, spool, output, rest } = await deliverInPieces([stream.subarray(0, i), stream.subarray(i)]);
    const where = `split at ${i}`;
    assert.deepEqual(codes(output), ["250 2.0.0"], where);
    assert.equal(output.replies[0]!.lines[0], "Ok: queued as Q1", where);
    assert.equal([spool.commits, spool.aborts, spool.lateCalls].join(), "1,0,0", where);
    assert.equal(spool.text, received("Q1") + STORED_BODY, where);
    assert.equal(rest.toString(), "QUIT\r\n", where);
    assert.equal(h.queued.length, 1, where);
    assert.equal(h.session.expecting, "command", where);
  }
});

test("DATA one byte at a time gives the same message", async () => {
  const stream = Buffer.from(MESSAGE);
  const pieces = [...stream].map((b) => Buffer.from([b]));
  const { spool, output, calls, rest } = await deliverInPieces(pieces);
  assert.deepEqual(codes(output), ["250 2.0.0"]);
  assert.equal(calls, stream.length, "no answer before the last byte of the terminator");
  assert.equal(rest.length, 0);
  assert.equal(spool.text, received("Q1") + STORED_BODY);
});

test("receiveData resolves null while the message goes on", async () => {
  const h = await ready(MTA);
  await h.toData();
  assert.equal(await h.session.receiveData(Buffer.from("Subject: x\r\n\r\nbody\r\n")), null);
  assert.equal(await h.session.receiveData(Buffer.from(".")), null);
  assert.equal(await h.session.receiveData(Buffer.from("\r")), null);
  assert.notEqual(await h.session.receiveData(Buffer.from("\n")), null);
});

test("the bytes after the terminator are returned as the next commands", async () => {
  const h = await ready(MTA);
  await h.toData();
  const pipelined = "MAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n";
  const { output, rest } = await h.data(`Subject: one\r\n\r\nfirst\r\n.\r\n${pipelined}`);
  assert.deepEqual(codes(output), ["250 2.0.0"]);
  assert.equal(rest.toString(), pipelined);
  await h.expect(["MAIL FROM:<>", "250 2.1.0"], ["RCPT TO:<alice@example.org>", "250 2.1.5"], ["DATA", "354"]);
  await h.data("Subject: two\r\n\r\nsecond\r\n.\r\n");
  assert.deepEqual(
    h.queued.map((q) => q.id),
    ["Q1", "Q2"],
  );
});

test("after a message the transaction is over: RCPT → 503, a new MAIL → 250", async () => {
  const h = await ready(MTA);
  await h.toData();
  await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
  await h.expect(["RCPT TO:<bob@example.org>", "503 5.5.1"], ["DATA", "503 5.5.1"], ["MAIL FROM:<>", "250 2.1.0"]);
});

test("an empty message (just the terminator) is accepted with our Received header", async () => {
  const h = await ready(MTA);
  const spool = await h.toData();
  const { output } = await h.data(".\r\n");
  assert.deepEqual(codes(output), ["250 2.0.0"]);
  assert.equal(spool.text, received("Q1"));
});

for (const [name, body] of [
  ["bare LF inside a line", "Subject: x\r\n\r\nbad\nline\r\n.\r\n"],
  ["bare CR inside a line", "Subject: x\r\n\r\nbad\rline\r\n.\r\n"],
  ["smuggling with <LF>.<LF>", "Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@example.net>\r\n.\r\n"],
  ["smuggling with <CR><LF>.<LF>", "Subject: x\r\n\r\nhi\r\n.\nMAIL FROM:<evil@example.net>\r\n.\r\n"],
  ["smuggling with <LF>.<CR><LF>", "Subject: x\r\n\r\nhi\n.\r\nMAIL FROM:<evil@example.net>\r\n.\r\n"],
  ["bare LF in the header section", "Subject: x\nFrom: y\r\n\r\nhi\r\n.\r\n"],
] as const) {
  test(`${name} → 521 5.5.2, close, the spool file is aborted and never committed`, async () => {
    const h = await ready(MTA);
    const spool = await h.toData();
    const { output } = await h.data(body);
    assert.deepEqual(codes(output), ["521 5.5.2"]);
    assert.equal(output.action, "close");
    assert.equal([spool.commits, spool.aborts].join(), "0,1");
    assert.equal(h.queued.length, 0);
    assert.deepEqual(await h.send("MAIL FROM:<>"), { replies: [] }, "nothing after the close");
  });
}

test('bareLineEnds: "normalize" stores a bare LF as CRLF and a "." after it stays data', async () => {
  const h = await ready({ mode: "mta", bareLineEnds: "normalize" });
  const spool = await h.toData();
  const { output } = await h.data("Subject: x\r\n\r\nhi\n.\nstill data\r\n.\r\n");
  assert.deepEqual(codes(output), ["250 2.0.0"]);
  assert.equal(spool.text, received("Q1") + "Subject: x\r\n\r\nhi\r\n.\r\nstill data\r\n");
});

test("a message over the size limit → 552 5.3.4 after the terminator, aborted, session goes on", async () => {
  const h = await ready({ mode: "mta", limits: { messageSize: 1024 } });
  const spool = await h.toData();
  const { output, rest } = await h.data(`Subject: big\r\n\r\n${"x".repeat(900)}\r\n${"y".repeat(900)}\r\n.\r\nNOOP\r\n`);
  assert.deepEqual(codes(output), ["552 5.3.4"]);
  assert.equal(output.action, undefined);
  assert.equal(rest.toString(), "NOOP\r\n");
  assert.equal([spool.commits, spool.aborts].join(), "0,1");
  await h.expect(["NOOP", "250 2.0.0"], ["RCPT TO:<bob@example.org>", "503 5.5.1"]);
});

test("a message of exactly the size limit is accepted; one octet more is not", async () => {
  const head = "Subject: x\r\n\r\n";
  const fill = (n: number) => {
    let body = head;
    while (body.length + 100 <= n) body += `${"a".repeat(98)}\r\n`;
    return `${body}${"b".repeat(n - body.length - 2)}\r\n.\r\n`;
  };
  const ok = await ready({ mode: "mta", limits: { messageSize: 1024 } });
  await ok.toData();
  assert.deepEqual(codes((await ok.data(fill(1024))).output), ["250 2.0.0"]);
  const over = await ready({ mode: "mta", limits: { messageSize: 1024 } });
  await over.toData();
  assert.deepEqual(codes((await over.data(fill(1025))).output), ["552 5.3.4"]);
});

test("a line of 998 octets is fine; 999 → 500 5.5.2 and the message is aborted", async () => {
  const ok = await ready(MTA);
  await ok.toData();
  assert.deepEqual(codes((await ok.data(`Subject: x\r\n\r\n${"a".repeat(998)}\r\n.\r\n`)).output), ["250 2.0.0"]);
  const long = await ready(MTA);
  const spool = await long.toData();
  const { output } = await long.data(`Subject: x\r\n\r\n${"a".repeat(999)}\r\n.\r\n`);
  assert.deepEqual(codes(output), ["500 5.5.2"]);
  assert.equal(output.action, undefined);
  assert.equal([spool.commits, spool.aborts].join(), "0,1");
});

test("issue 12: the line limit counts the line after unstuffing: 998 octets starting with a dot pass", async () => {
  const ok = await ready(MTA);
  const spool = await ok.toData();
  // 998 octets of text, the first a dot: 999 on the wire once stuffed (RFC 5321 §4.5.2).
  const { output } = await ok.data(`Subject: x\r\n\r\n..${"a".repeat(997)}\r\n.\r\n`);
  assert.deepEqual(codes(output), ["250 2.0.0"]);
  assert.ok(spool.text.endsWith(`\r\n\r\n.${"a".repeat(997)}\r\n`), "stored unstuffed, 998 octets");
  const over = await ready(MTA);
  await over.toData();
  assert.deepEqual(codes((await over.data(`Subject: x\r\n\r\n..${"a".repeat(998)}\r\n.\r\n`)).output), ["500 5.5.2"], "999 after unstuffing");
});

// ---- DATA refused before 354 ------------------------------------------------------------------------

test("DATA after MAIL without RCPT → 503 5.5.1; after only refused RCPTs → 554 5.5.1", async () => {
  const h = await ready(MTA);
  await h.expect(["MAIL FROM:<>", "250 2.1.0"], ["DATA", "503 5.5.1"]);
  await h.expect(["RCPT TO:<x@remote.example>", "554 5.7.1"], ["RCPT TO:<nobody@example.org>", "550 5.1.1"], ["DATA", "554 5.5.1"]);
  assert.equal(h.spools.length, 0, "no spool file opened");
});

test("DATA with some RCPTs refused stores only the accepted ones", async () => {
  const h = await ready(MTA);
  await h.expect(["MAIL FROM:<>", "250 2.1.0"], ["RCPT TO:<nobody@example.org>", "550 5.1.1"], ["RCPT TO:<alice@example.org>", "250 2.1.5"], ["DATA", "354"]);
  await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
  assert.deepEqual(
    h.spools[0]!.envelope!.recipients.map((r) => r.address),
    ["alice@example.org"],
  );
});

// ---- the spool ------------------------------------------------------------------------------------

test("commit comes before queued(), and 250 only after both", async () => {
  const h = await ready(MTA);
  const spool = await h.toData();
  const { output } = await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
  assert.deepEqual(codes(output), ["250 2.0.0"]);
  const tail = h.events.filter((e) => !e.startsWith("write"));
  assert.deepEqual(tail, ["commit Q1", "queued Q1"]);
  assert.equal(h.events.lastIndexOf("write Q1") < h.events.indexOf("commit Q1"), true, "no write after commit");
  assert.deepEqual(h.queued[0]!.envelope, spool.envelope);
});

test("the envelope describes the client: IP, HELO name, listener, login, TLS", async () => {
  const h = await ready({ mode: "submission" });
  await h.toData({ from: "alice@example.org", to: ["friend@remote.example"] });
  await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
  const env = h.spools[0]!.envelope!;
  assert.deepEqual(env.client, { ip: CLIENT_IP, helo: HELO_NAME, listener: "submission", authUser: "alice@example.org", tls: TLS });
  assert.equal(env.mailFrom, "alice@example.org");
  assert.deepEqual(
    env.recipients.map((r) => r.address),
    ["friend@remote.example"],
  );
});

test("the spool cannot be opened → DATA 451 4.3.0, still in the transaction", async () => {
  const h = await ready({ mode: "mta", spool: { open: true } });
  await h.expect(["MAIL FROM:<>", "250 2.1.0"], ["RCPT TO:<bob@example.org>", "250 2.1.5"], ["DATA", "451 4.3.0"]);
  assert.equal(h.session.expecting, "command");
  await h.expect(["RCPT TO:<alice@example.org>", "250 2.1.5"]);
});

test("a spool write failure → 451 4.3.0 after the terminator, aborted, not committed", async () => {
  const h = await ready({ mode: "mta", spool: { write: true } });
  const spool = await h.toData();
  const { output, rest } = await h.data("Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n");
  assert.deepEqual(codes(output), ["451 4.3.0"]);
  assert.equal(rest.toString(), "QUIT\r\n");
  assert.equal([spool.commits, spool.aborts].join(), "0,1");
  assert.equal(h.queued.length, 0);
});

test("a spool commit failure → 451 4.3.0, the file is aborted and nothing is queued", async () => {
  const h = await ready({ mode: "mta", spool: { commit: true } });
  const spool = await h.toData();
  const { output } = await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
  assert.deepEqual(codes(output), ["451 4.3.0"]);
  assert.equal([spool.commits, spool.aborts].join(), "1,1");
  assert.deepEqual(
    h.events.filter((e) => !e.startsWith("write")),
    ["commit Q1", "abort Q1"],
  );
  assert.equal(h.queued.length, 0);
  await h.expect(["MAIL FROM:<>", "250 2.1.0"]);
});

test("abort() during DATA aborts the spool file and silences the session", async () => {
  const h = await ready(MTA);
  const spool = await h.toData();
  assert.equal(await h.session.receiveData(Buffer.from("Subject: x\r\n\r\nhalf a mess")), null);
  await h.session.abort();
  assert.equal([spool.commits, spool.aborts].join(), "0,1");
  assert.equal(h.events[h.events.length - 1], "abort Q1", "abort after the last write");
  assert.equal(h.session.expecting, "command");
  assert.deepEqual(await h.send("QUIT"), { replies: [] });
});

test("abort() outside DATA touches no spool file", async () => {
  const h = await ready(MTA);
  await h.expect(["MAIL FROM:<>", "250 2.1.0"]);
  await h.session.abort();
  assert.equal(h.spools.length, 0);
});

for (const mode of ["submission", "submissions"] as const) {
  test(`${mode}: a whole authenticated submission is queued`, async () => {
    const h = await ready({ mode });
    const spool = await h.toData({ to: ["friend@remote.example"] });
    const { output } = await h.data("From: alice@example.org\r\nDate: x\r\nMessage-ID: <1@x>\r\nSubject: hi\r\n\r\nhello\r\n.\r\n");
    assert.deepEqual(codes(output), ["250 2.0.0"]);
    assert.equal(spool.commits, 1);
  });
}
