import { test } from "node:test";
import assert from "node:assert/strict";
import { InputBuffer, type LineResult } from "../../src/smtp/input-buffer.js";

/** Feeds the chunks and takes every result until "need more" or an error. */
function run(chunks: Buffer[], maxLength = 512): (string | LineResult)[] {
  const input = new InputBuffer();
  const out: (string | LineResult)[] = [];
  for (const chunk of chunks) {
    input.push(chunk);
    for (;;) {
      const r = input.takeLine(maxLength);
      if (r === null) break;
      if (r.kind === "error") {
        out.push(r);
        return out;
      }
      out.push(r.line.toString("latin1"));
    }
  }
  return out;
}

test("splits CRLF lines, whatever the byte boundary", () => {
  const wire = Buffer.from("EHLO a.example\r\nMAIL FROM:<a@b>\r\n\r\nQUIT\r\n");
  const expected = ["EHLO a.example", "MAIL FROM:<a@b>", "", "QUIT"];
  for (let cut = 0; cut <= wire.length; cut++) {
    assert.deepEqual(run([wire.subarray(0, cut), wire.subarray(cut)]), expected, `cut at ${cut}`);
  }
  assert.deepEqual(run([...wire].map((b) => Buffer.from([b]))), expected, "one byte at a time");
});

test("lines: the returned line excludes CRLF and is a copy", () => {
  const input = new InputBuffer();
  input.push(Buffer.from("NOOP\r\nNOOP2\r\n"));
  const first = input.takeLine(512);
  assert.deepEqual(first, { kind: "line", line: Buffer.from("NOOP") });
  input.push(Buffer.from("x".repeat(5000))); // forces the internal buffer to grow/move
  assert.equal((first as { line: Buffer }).line.toString(), "NOOP");
  assert.deepEqual(input.takeLine(512), { kind: "line", line: Buffer.from("NOOP2") });
});

const errorCases: { name: string; wire: string; error: "bare-lf" | "bare-cr" | "too-long"; max?: number }[] = [
  { name: "bare LF ends nothing (SECURITY rule 1)", wire: "NOOP\nQUIT\r\n", error: "bare-lf" },
  { name: "bare LF at the start", wire: "\nNOOP\r\n", error: "bare-lf" },
  { name: "bare CR followed by text", wire: "NOOP\rQUIT\r\n", error: "bare-cr" },
  { name: "CR CR LF", wire: "NOOP\r\r\n", error: "bare-cr" },
  { name: "LF CR", wire: "NOOP\n\r", error: "bare-lf" },
  { name: "line longer than the limit", wire: "x".repeat(11) + "\r\n", error: "too-long", max: 10 },
  { name: "no line end past the limit", wire: "x".repeat(11), error: "too-long", max: 10 },
];
for (const c of errorCases) {
  test(`command line error: ${c.name}`, () => {
    assert.deepEqual(run([Buffer.from(c.wire)], c.max).at(-1), { kind: "error", error: c.error });
  });
}

test("a CR at the end of the pending bytes waits for the next byte", () => {
  const input = new InputBuffer();
  input.push(Buffer.from("NOOP\r"));
  assert.equal(input.takeLine(512), null);
  input.push(Buffer.from("\n"));
  assert.deepEqual(input.takeLine(512), { kind: "line", line: Buffer.from("NOOP") });
  input.push(Buffer.from("NOOP\r"));
  assert.equal(input.takeLine(512), null);
  input.push(Buffer.from("X"));
  assert.deepEqual(input.takeLine(512), { kind: "error", error: "bare-cr" });
});

test("too-long: reported as soon as more than maxLength bytes are pending, without waiting for a line end", () => {
  const input = new InputBuffer();
  input.push(Buffer.from("x".repeat(10)));
  assert.equal(input.takeLine(10), null, "exactly maxLength is still fine");
  input.push(Buffer.from("x"));
  assert.deepEqual(input.takeLine(10), { kind: "error", error: "too-long" });
});

test("too-long: a line of exactly maxLength plus CRLF is accepted; maxLength plus a pending CR waits", () => {
  const input = new InputBuffer();
  input.push(Buffer.from("y".repeat(10) + "\r"));
  assert.equal(input.takeLine(10), null);
  input.push(Buffer.from("\n"));
  assert.deepEqual(input.takeLine(10), { kind: "line", line: Buffer.from("y".repeat(10)) });
});

test("too-long: the limit applies per call (AUTH responses get a larger one)", () => {
  const input = new InputBuffer();
  input.push(Buffer.from("a".repeat(600) + "\r\n"));
  assert.deepEqual(input.takeLine(12288), { kind: "line", line: Buffer.from("a".repeat(600)) });
});

test("errors consume nothing and repeat", () => {
  const input = new InputBuffer();
  input.push(Buffer.from("A\nB\r\n"));
  assert.deepEqual(input.takeLine(512), { kind: "error", error: "bare-lf" });
  assert.deepEqual(input.takeLine(512), { kind: "error", error: "bare-lf" });
  assert.equal(input.pendingLength, 5);
});

test("pendingLength counts bytes not yet taken (STARTTLS pipelining check, SECURITY rule 2)", () => {
  const input = new InputBuffer();
  assert.equal(input.pendingLength, 0);
  input.push(Buffer.from("STARTTLS\r\nMAIL FROM:<a@b>\r\n"));
  input.takeLine(512);
  assert.equal(input.pendingLength, "MAIL FROM:<a@b>\r\n".length);
  input.clear();
  assert.equal(input.pendingLength, 0);
  assert.equal(input.takeLine(512), null);
});

test("takeAll returns everything pending (DATA switch) and empties the buffer", () => {
  const input = new InputBuffer();
  input.push(Buffer.from("DATA\r\nSubject: x\r\n\r\nbody\n.\r\n"));
  assert.deepEqual(input.takeLine(512), { kind: "line", line: Buffer.from("DATA") });
  assert.equal(input.takeAll().toString(), "Subject: x\r\n\r\nbody\n.\r\n");
  assert.equal(input.pendingLength, 0);
  assert.equal(input.takeAll().length, 0);
  input.push(Buffer.from("QUIT\r\n"));
  assert.deepEqual(input.takeLine(512), { kind: "line", line: Buffer.from("QUIT") });
});

test("many pipelined lines arriving in tiny pieces come out in order", () => {
  const lines = Array.from({ length: 2000 }, (_, i) => `RCPT TO:<user${i}@example.org>`);
  const wire = Buffer.from(lines.map((l) => l + "\r\n").join(""));
  const chunks: Buffer[] = [];
  for (let i = 0; i < wire.length; i += 7) chunks.push(wire.subarray(i, i + 7));
  assert.deepEqual(run(chunks), lines);
});

test("a line with the longer prefix may reach the longer cap, any ASCII case; others keep the short one", () => {
  const longer = { prefix: "AUTH ", maxLength: 100 };
  const take = (text: string) => {
    const b = new InputBuffer();
    b.push(Buffer.from(`${text}\r\n`));
    return b.takeLine(20, longer);
  };
  assert.equal(take(`AUTH ${"x".repeat(95)}`)?.kind, "line");
  assert.equal(take(`aUtH ${"x".repeat(95)}`)?.kind, "line");
  assert.deepEqual(take(`AUTH ${"x".repeat(96)}`), { kind: "error", error: "too-long" });
  assert.deepEqual(take(`AUTHX${"x".repeat(30)}`), { kind: "error", error: "too-long" });
  assert.deepEqual(take(`NOOP ${"x".repeat(30)}`), { kind: "error", error: "too-long" });
  // A line still arriving: the prefix decides as soon as the short cap is passed.
  const b = new InputBuffer();
  b.push(Buffer.from(`AUTH ${"x".repeat(50)}`));
  assert.equal(b.takeLine(20, longer), null);
  b.push(Buffer.from("x".repeat(50)));
  assert.deepEqual(b.takeLine(20, longer), { kind: "error", error: "too-long" });
});
