/**
 * CHUNKING / BDAT (RFC 3030) in the session state machine: exact octet counts, no dot-unstuffing,
 * the same text rules as DATA (bare CR/LF, line length: SECURITY.md rule 1, issue 11.1), the same
 * size limit and durability as DATA, no mixing with DATA, and refused BDATs whose octets are
 * still consumed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { codes, ready, type Harness } from "./session-helpers.js";

/** Sends "BDAT n [LAST]" and then the octets (in the given pieces); returns the reply codes. */
async function bdat(h: Harness, payload: Buffer | string, last: boolean, pieces = 1): Promise<string[]> {
  const bytes = typeof payload === "string" ? Buffer.from(payload, "latin1") : payload;
  const out = await h.send(`BDAT ${bytes.length}${last ? " LAST" : ""}`);
  if (bytes.length === 0) return codes(out);
  assert.deepEqual(out.replies, [], "no reply before the chunk's octets are in");
  assert.equal(h.session.expecting, "chunk");
  assert.equal(h.session.chunkRemaining, bytes.length);
  const step = Math.ceil(bytes.length / pieces);
  for (let i = 0; i < bytes.length; i += step) {
    const result = await h.session.receiveChunk(bytes.subarray(i, i + step));
    if (i + step < bytes.length) assert.equal(result, null, "no reply mid-chunk");
    else return codes(result!);
  }
  assert.fail("unreachable");
}

async function transaction(h: Harness): Promise<void> {
  await h.expect(["MAIL FROM:<alice@example.org>", "250 2.1.0"], ["RCPT TO:<bob@example.org>", "250 2.1.5"]);
}

test("EHLO advertises CHUNKING", async () => {
  const h = await ready();
  assert.ok((await h.ehlo()).includes("CHUNKING"));
});

test("chunks are stored byte for byte (no dot-unstuffing, no end marker) and 250 comes after commit", async () => {
  const h = await ready();
  await transaction(h);
  assert.deepEqual(await bdat(h, "Subject: chunked\r\n\r\n..not stuffed\r\n.\r\n", false, 3), ["250 2.0.0"]);
  assert.equal(h.session.expecting, "command");
  const binary = Buffer.from([0x00, 0xff, 0x2e, 0x0d, 0x0a, 0x80, 0x0d, 0x0a]);
  const done = await bdat(h, binary, true);
  assert.deepEqual(done, ["250 2.0.0"]);
  const spool = h.spools[0]!;
  assert.equal(spool.commits, 1);
  assert.deepEqual(h.events.slice(-2), [`commit ${spool.id}`, `queued ${spool.id}`], "committed before the 250");
  const body = spool.bytes.subarray(spool.bytes.indexOf("Subject: chunked"));
  assert.deepEqual(body, Buffer.concat([Buffer.from("Subject: chunked\r\n\r\n..not stuffed\r\n.\r\n", "latin1"), binary]));
  assert.match(spool.text, /^Received: from client\.example\.net/, "the same trace header as DATA");
});

test("BDAT 0 LAST ends a message; BDAT without MAIL or RCPT is refused after its octets are read", async () => {
  const h = await ready();
  assert.deepEqual(await bdat(h, "MAIL FROM:<evil@x>\r\n", true), ["503 5.5.1"], "the octets are data, not commands");
  assert.equal(h.session.expecting, "command");
  await h.expect(["MAIL FROM:<alice@example.org>", "250 2.1.0"]);
  assert.deepEqual(await bdat(h, "abc", false), ["503 5.5.1"], "no recipients yet");
  await h.expect(["RCPT TO:<bob@example.org>", "250 2.1.5"]);
  assert.deepEqual(await bdat(h, "Subject: x\r\n\r\nhi\r\n", false), ["250 2.0.0"]);
  assert.deepEqual(await bdat(h, "", true), ["250 2.0.0"]);
  assert.equal(h.spools.length, 1);
  assert.equal(h.spools[0]!.commits, 1);
});

test("BDAT and DATA do not mix (503 5.5.1); RSET discards the chunks received so far", async () => {
  const h = await ready();
  await transaction(h);
  assert.deepEqual(await bdat(h, "Subject: x\r\n\r\n", false), ["250 2.0.0"]);
  await h.expect(["DATA", "503 5.5.1"], ["RSET", "250 2.0.0"]);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(h.spools[0]!.aborts, 1, "the half-received message is removed");
  assert.equal(h.spools[0]!.commits, 0);
  assert.deepEqual(await bdat(h, "abc", true), ["503 5.5.1"], "RSET ended the transaction");
});

test("the message size limit applies across chunks: 552 5.3.4 and the transaction ends", async () => {
  const h = await ready({ limits: { messageSize: 1024 } });
  await transaction(h);
  assert.deepEqual(await bdat(h, "Subject: big\r\n\r\n" + `${"x".repeat(98)}\r\n`.repeat(6), false), ["250 2.0.0"]);
  assert.deepEqual(await bdat(h, `${"y".repeat(98)}\r\n`.repeat(6), false, 4), ["552 5.3.4"]);
  assert.equal(h.spools[0]!.commits, 0);
  assert.deepEqual(await bdat(h, "z", true), ["503 5.5.1"], "no transaction any more");
});

test("syntax: a size that is not a number, or a second argument other than LAST, is 501 5.5.4", async () => {
  const h = await ready();
  await transaction(h);
  for (const line of ["BDAT", "BDAT x", "BDAT -1", "BDAT 10 FIRST", "BDAT 1 LAST extra", "BDAT 1234567890123456"]) {
    assert.deepEqual(codes(await h.send(line)), ["501 5.5.4"], line);
    assert.equal(h.session.expecting, "command");
  }
});

test("EHLO or a lost connection in the middle of a chunked message removes its spool file", async () => {
  const h = await ready();
  await transaction(h);
  assert.deepEqual(await bdat(h, "Subject: x\r\n\r\n", false), ["250 2.0.0"]);
  await h.ehlo();
  await transaction(h);
  await h.send("BDAT 100");
  await h.session.receiveChunk(Buffer.from("partial"));
  await h.session.abort();
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(
    h.spools.map((s) => [s.commits, s.aborts]),
    [
      [0, 1],
      [0, 1],
    ],
  );
});

// ---- the text rules DATA applies hold in BDAT (SECURITY.md rule 1; issue 11.1) -------------------

for (const [name, payload] of [
  ["a bare CR", "Subject: hi\rFrom: boss@example.org\r\nTo: bob@example.org\r\n\r\nbody\r\n"],
  ["a bare LF", "Subject: hi\nFrom: boss@example.org\r\n\r\nbody\r\n"],
  ["a bare CR in the body", "Subject: hi\r\n\r\nbody\r.\rRSET\r\n"],
] as const) {
  test(`${name} in a chunk → 521 5.5.2 and close, as in DATA; nothing is queued`, async () => {
    const h = await ready();
    await transaction(h);
    const out = await h.send(`BDAT ${payload.length} LAST`);
    assert.deepEqual(out.replies, []);
    const result = (await h.session.receiveChunk(Buffer.from(payload, "latin1")))!;
    assert.deepEqual(codes(result), ["521 5.5.2"]);
    assert.equal(result.action, "close");
    assert.equal(h.session.expecting, "command");
    assert.deepEqual([h.spools[0]!.commits, h.spools[0]!.aborts], [0, 1]);
    assert.equal(h.queued.length, 0);
  });
}

test("a CR at the end of one chunk and its LF at the start of the next are one CRLF", async () => {
  const h = await ready();
  await transaction(h);
  assert.deepEqual(await bdat(h, "Subject: split\r", false), ["250 2.0.0"]);
  assert.deepEqual(await bdat(h, "\n\r\nbody\r", false), ["250 2.0.0"]);
  assert.deepEqual(await bdat(h, "\n", true), ["250 2.0.0"]);
  assert.ok(h.spools[0]!.text.endsWith("Subject: split\r\n\r\nbody\r\n"));
});

test("a CR at the very end of the last chunk is bare: 521 5.5.2", async () => {
  const h = await ready();
  await transaction(h);
  assert.deepEqual(await bdat(h, "Subject: x\r\n\r\nbody\r", true), ["521 5.5.2"]);
  assert.equal(h.spools[0]!.commits, 0);
});

test('bareLineEnds "normalize": bare CR and LF become CRLF before the header checks read them', async () => {
  const h = await ready({ mode: "submissions", bareLineEnds: "normalize" });
  await h.expect(["MAIL FROM:<alice@example.org>", "250 2.1.0"], ["RCPT TO:<bob@remote.example>", "250 2.1.5"]);
  // The issue 11.1 attack: the From: behind the bare CR is a header line to the next hop, so to us.
  assert.deepEqual(await bdat(h, "Subject: hi\rFrom: boss@example.org\r\n\r\nbody\r\n", true, 3), ["553 5.7.1"]);
  await h.expect(["MAIL FROM:<alice@example.org>", "250 2.1.0"], ["RCPT TO:<bob@remote.example>", "250 2.1.5"]);
  assert.deepEqual(await bdat(h, "Subject: hi\rFrom: alice@example.org\n\nbody\rmore\n", true), ["250 2.0.0"]);
  assert.ok(h.spools[1]!.text.endsWith("Subject: hi\r\nFrom: alice@example.org\r\n\r\nbody\r\nmore\r\n"), h.spools[1]!.text);
});

test("a line of 998 octets passes in BDAT; 999 → 500 5.5.2 at that chunk and the transaction ends", async () => {
  const ok = await ready();
  await transaction(ok);
  assert.deepEqual(await bdat(ok, `Subject: x\r\n\r\n${"a".repeat(998)}\r\n`, true, 4), ["250 2.0.0"]);
  const long = await ready();
  await transaction(long);
  assert.deepEqual(await bdat(long, "Subject: x\r\n\r\n", false), ["250 2.0.0"]);
  assert.deepEqual(await bdat(long, `${"a".repeat(999)}\r\n`, false, 3), ["500 5.5.2"]);
  assert.deepEqual([long.spools[0]!.commits, long.spools[0]!.aborts], [0, 1]);
  assert.deepEqual(await bdat(long, "more\r\n", true), ["503 5.5.1"], "no transaction any more");
  const endless = await ready();
  await transaction(endless);
  assert.deepEqual(await bdat(endless, "a".repeat(999), true), ["500 5.5.2"], "an unterminated last line counts too");
});

test("a last line without CRLF is stored with one, and a From: there is checked", async () => {
  const h = await ready({ mode: "submissions" });
  await h.expect(["MAIL FROM:<alice@example.org>", "250 2.1.0"], ["RCPT TO:<bob@remote.example>", "250 2.1.5"]);
  assert.deepEqual(await bdat(h, "Subject: hi\r\nFrom: boss@example.org", true), ["553 5.7.1"]);
  await h.expect(["MAIL FROM:<alice@example.org>", "250 2.1.0"], ["RCPT TO:<bob@remote.example>", "250 2.1.5"]);
  assert.deepEqual(await bdat(h, "Subject: hi\r\n\r\nno final line end", true), ["250 2.0.0"]);
  assert.ok(h.spools[1]!.text.endsWith("\r\n\r\nno final line end\r\n"));
});
