import { test } from "node:test";
import assert from "node:assert/strict";
import { DataReader, type DataError, type DataReaderOptions } from "../../src/smtp/data-reader.js";

interface Outcome {
  stored: string;
  done: boolean;
  rest: string;
  error?: DataError;
  pushesAfterDone: number;
}

/** Feeds chunks until done; returns what was stored, what followed, and how it ended. */
function feed(chunks: (string | Buffer)[], opts: Partial<DataReaderOptions> = {}): Outcome {
  const reader = new DataReader({ maxMessageSize: 1 << 20, ...opts });
  const stored: Buffer[] = [];
  const out: Outcome = { stored: "", done: false, rest: "", pushesAfterDone: 0 };
  for (const chunk of chunks) {
    const buf = typeof chunk === "string" ? Buffer.from(chunk, "latin1") : chunk;
    if (out.done) {
      out.rest += buf.toString("latin1");
      out.pushesAfterDone++;
      continue;
    }
    const r = reader.push(buf);
    stored.push(...r.data);
    if (r.done) {
      out.done = true;
      out.rest = r.rest?.toString("latin1") ?? "";
      if (r.error) out.error = r.error;
    }
  }
  out.stored = Buffer.concat(stored).toString("latin1");
  return out;
}

test("a message ends at CRLF.CRLF; the CRLF before the dot belongs to the message", () => {
  const r = feed(["Subject: hi\r\n\r\nbody\r\n.\r\n"]);
  assert.deepEqual([r.stored, r.done, r.error], ["Subject: hi\r\n\r\nbody\r\n", true, undefined]);
});

test("an immediate '.' line ends an empty message (the DATA command's CRLF counts)", () => {
  const r = feed([".\r\n"]);
  assert.deepEqual([r.stored, r.done, r.rest], ["", true, ""]);
});

test("bytes after the terminator come back in rest", () => {
  const r = feed(["a\r\n.\r\nQUIT\r\n"]);
  assert.deepEqual([r.stored, r.rest], ["a\r\n", "QUIT\r\n"]);
});

test("no terminator, no end", () => {
  const r = feed(["a\r\nb\r\n", ".x\r\n", "..\r\n"]);
  assert.equal(r.done, false);
});

const unstuffing: [string, string][] = [
  ["..\r\n.\r\n", ".\r\n"],
  ["..x\r\n.\r\n", ".x\r\n"],
  [".x\r\n.\r\n", "x\r\n"],
  ["a\r\n...\r\n.\r\n", "a\r\n..\r\n"],
  ["a.b\r\n.\r\n", "a.b\r\n"],
  ["x\r\n. \r\n.\r\n", "x\r\n \r\n"],
];
for (const [wire, stored] of unstuffing) {
  test(`dot-unstuffing (§4.5.2): ${JSON.stringify(wire)}`, () => {
    const r = feed([wire]);
    assert.deepEqual([r.stored, r.done], [stored, true]);
  });
}

test("the terminator split at every position still ends the message, with the same output", () => {
  const wire = "Subject: x\r\n\r\n..dot\r\nlast\r\n.\r\nNOOP\r\n";
  for (let cut = 0; cut <= wire.length; cut++) {
    const r = feed([wire.slice(0, cut), wire.slice(cut)]);
    assert.deepEqual([r.stored, r.done, r.rest + ""], ["Subject: x\r\n\r\n.dot\r\nlast\r\n", true, "NOOP\r\n"], `cut ${cut}`);
  }
  const oneByOne = feed([...wire]);
  assert.equal(oneByOne.stored, "Subject: x\r\n\r\n.dot\r\nlast\r\n");
  assert.equal(oneByOne.rest, "NOOP\r\n");
});

/**
 * SMTP smuggling (CVE-2023-51764/51765/51766): none of these is an end of data.
 * Each variant is followed by a smuggled command and finally a real terminator.
 */
const smuggling: [string, string][] = [
  ["\\n.\\n", "x\n.\nMAIL FROM:<evil@x>\r\n"],
  ["\\n.\\r\\n", "x\n.\r\nMAIL FROM:<evil@x>\r\n"],
  ["\\r.\\r", "x\r.\rMAIL FROM:<evil@x>\r\n"],
  ["\\r\\n.\\r", "x\r\n.\rMAIL FROM:<evil@x>\r\n"],
  ["\\r\\n.\\n", "x\r\n.\nMAIL FROM:<evil@x>\r\n"],
  ["\\r.\\r\\n", "x\r.\r\nMAIL FROM:<evil@x>\r\n"],
];
const ending = ".\r\n";
for (const [name, body] of smuggling) {
  test(`smuggling ${name}, reject mode: refused at once with bare-line-end, nothing after it is read`, () => {
    const r = feed([body + ending], { bareLineEnds: "reject" });
    assert.deepEqual([r.done, r.error, r.rest], [true, "bare-line-end", ""]);
    assert.ok(!r.stored.includes("MAIL FROM"), "nothing after the bare line end is stored");
  });
  test(`smuggling ${name}, normalize mode: not an end; stored with CRLF only`, () => {
    const r = feed([body + ending], { bareLineEnds: "normalize" });
    assert.deepEqual([r.done, r.error, r.rest], [true, undefined, ""]);
    assert.ok(r.stored.includes("MAIL FROM:<evil@x>\r\n"), "the smuggled command stays message data");
    assert.doesNotMatch(r.stored.replace(/\r\n/g, ""), /[\r\n]/, "no bare CR or LF is stored");
  });
}

test("normalize mode: exact output for bare line ends", () => {
  const cases: [string, string][] = [
    ["a\nb\r\n.\r\n", "a\r\nb\r\n"],
    ["a\rb\r\n.\r\n", "a\r\nb\r\n"],
    ["a\n.\nb\r\n.\r\n", "a\r\n.\r\nb\r\n"], // the lone dot is kept: it was not stuffed, and not an end
    ["a\n.\r\n.\r\n", "a\r\n.\r\n"], // CRLF after the soft "." line is real, so the next "." line ends it
    ["a\r\n.\rb\r\n.\r\n", "a\r\n.\r\nb\r\n"],
    ["a\n..x\r\n.\r\n", "a\r\n.x\r\n"], // unstuffing still applies after a bare line end
    ["\r\r\n.\r\n", "\r\n\r\n"],
  ];
  for (const [wire, stored] of cases) {
    const r = feed([wire], { bareLineEnds: "normalize" });
    assert.deepEqual([r.stored, r.done], [stored, true], JSON.stringify(wire));
  }
});

test(".\\r\\n not after CRLF is data, in both modes", () => {
  for (const mode of ["reject", "normalize"] as const) {
    const r = feed(["abc.\r\nx.\r\n.\r\n"], { bareLineEnds: mode });
    assert.deepEqual([r.stored, r.done], ["abc.\r\nx.\r\n", true], mode);
  }
});

test("reject is the default mode", () => {
  assert.equal(feed(["a\nb\r\n.\r\n"]).error, "bare-line-end");
});

test("a CR at a chunk end is decided by the next chunk", () => {
  assert.deepEqual(feed(["a\r", "\n.\r\n"]).stored, "a\r\n");
  assert.equal(feed(["a\r", "b\r\n.\r\n"]).error, "bare-line-end");
  assert.equal(feed(["a\r\n.\r", "x\r\n.\r\n"]).error, "bare-line-end");
});

test("too-big: stops storing, still finds the terminator, then reports", () => {
  const r = feed(["0123456789\r\n", "more data\r\n", ".\r\nQUIT\r\n"], { maxMessageSize: 8 });
  assert.deepEqual([r.done, r.error, r.rest], [true, "too-big", "QUIT\r\n"]);
  assert.ok(r.stored.length <= 8);
});

test("too-big: a message of exactly the limit is accepted", () => {
  const r = feed(["12345678\r\n.\r\n"], { maxMessageSize: 10 });
  assert.deepEqual([r.stored, r.error], ["12345678\r\n", undefined]);
});

test("line-too-long (§4.5.3.1.6): 998 octets plus CRLF pass, 999 fail; the terminator is still found", () => {
  const ok = feed(["x".repeat(998) + "\r\n.\r\n"]);
  assert.equal(ok.error, undefined);
  const long = feed(["x".repeat(999) + "\r\nnext\r\n.\r\nQUIT\r\n"]);
  assert.deepEqual([long.done, long.error, long.rest], [true, "line-too-long", "QUIT\r\n"]);
  const custom = feed(["abcd\r\n.\r\n"], { maxLineLength: 5 });
  assert.equal(custom.error, "line-too-long");
});

test("line-too-long counts the line after unstuffing (§4.5.3.1.6): the stuffed dot is not text", () => {
  // 998 octets starting with a dot go out stuffed as 999; they are still a line of 998.
  const stuffed = feed([".." + "x".repeat(997) + "\r\n.\r\n"]);
  assert.deepEqual([stuffed.error, stuffed.stored.length], [undefined, 1000]);
  assert.equal(feed(["." + "x".repeat(998) + "\r\n.\r\n"]).error, undefined, "a dropped dot in front of 998 octets");
  assert.equal(feed([".." + "x".repeat(998) + "\r\n.\r\n"]).error, "line-too-long", "999 octets after unstuffing");
  assert.equal(feed(["a\r\n." + "x".repeat(999) + "\r\n.\r\n"]).error, "line-too-long");
});

test("bytesStored counts stored bytes; done is reported once and a further push throws", () => {
  const reader = new DataReader({ maxMessageSize: 100 });
  assert.equal(reader.push(Buffer.from("..ab\r\n")).done, false);
  assert.equal(reader.bytesStored, 5);
  const end = reader.push(Buffer.from(".\r\n"));
  assert.equal(end.done, true);
  assert.equal(reader.isDone, true);
  assert.throws(() => reader.push(Buffer.from("x")));
});
