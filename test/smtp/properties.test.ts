/**
 * Property tests: arbitrary byte streams, split at arbitrary points, through the
 * line buffer, the DATA reader and the header collector. Part of the streams are what the dialog
 * files (test/dialogs/*.txt) write, with a few bytes changed: every new dialog widens them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { InputBuffer } from "../../src/smtp/input-buffer.js";
import { DataReader, type DataError } from "../../src/smtp/data-reader.js";
import { HeaderCollector } from "../../src/smtp/headers.js";
import { ChunkTextReader, type ChunkTextError } from "../../src/smtp/bdat.js";
import { encodeData } from "../../src/delivery/data-encoder.js";
import { parseCommand } from "../../src/smtp/command.js";
import { runs } from "./fuzz-config.js";
import { loadDialogCorpus } from "../dialogs/corpus.js";

/** Bytes biased towards the interesting ones: CR, LF, ".", and plain text. */
const smtpByte = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(0x0d, 0x0a, 0x2e) },
  { weight: 2, arbitrary: fc.constantFrom(0x41, 0x20, 0x3a) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
);
const randomStream = fc.array(smtpByte, { maxLength: 400 }).map((bytes) => Buffer.from(bytes));
/** Single writes and whole connections of the dialogs (the small ones: these properties are per byte). */
const dialogs = loadDialogCorpus();
const dialogBytes = [...dialogs.writes, ...dialogs.conversations.map((c) => Buffer.concat(c.writes))].filter((b) => b.length <= 4096);
/** A dialog's bytes with up to four bytes overwritten or inserted. */
const dialogStream = fc.tuple(fc.constantFrom(...dialogBytes), fc.array(fc.tuple(fc.nat(), smtpByte, fc.boolean()), { maxLength: 4 })).map(([bytes, edits]) => {
  const out = [...bytes];
  for (const [at, byte, insert] of edits) {
    if (insert || out.length === 0) out.splice(at % (out.length + 1), 0, byte);
    else out[at % out.length] = byte;
  }
  return Buffer.from(out);
});
const stream = fc.oneof({ weight: 3, arbitrary: randomStream }, { weight: 1, arbitrary: dialogStream });
/** A stream and cut points for splitting it. */
const split = fc.tuple(stream, fc.array(fc.nat(), { maxLength: 12 }));

function chunksOf(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (buf.length === 0 ? 0 : c % (buf.length + 1))))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, buf.length]) {
    chunks.push(buf.subarray(prev, p));
    prev = p;
  }
  return chunks;
}

interface LineRun {
  lines: string[];
  error?: string;
}
function lines(chunks: Buffer[], max: number): LineRun {
  const input = new InputBuffer();
  const run: LineRun = { lines: [] };
  for (const chunk of chunks) {
    input.push(chunk);
    for (let r = input.takeLine(max); r !== null; r = input.takeLine(max)) {
      if (r.kind === "error") {
        run.error = r.error;
        return run;
      }
      run.lines.push(r.line.toString("latin1"));
    }
  }
  return run;
}

interface DataRun {
  stored: Buffer;
  doneCount: number;
  error?: DataError;
  rest: Buffer;
}
function data(chunks: Buffer[], mode: "reject" | "normalize", maxMessageSize = 1 << 20): DataRun {
  const reader = new DataReader({ maxMessageSize, bareLineEnds: mode, maxLineLength: 80 });
  const stored: Buffer[] = [];
  const rest: Buffer[] = [];
  let doneCount = 0;
  let error: DataError | undefined;
  for (const chunk of chunks) {
    if (doneCount > 0) {
      // After a refused bare line end the connection closes: nothing more is read.
      if (error !== "bare-line-end") rest.push(chunk);
      continue;
    }
    const r = reader.push(chunk);
    stored.push(...r.data);
    if (r.done) {
      doneCount++;
      error = r.error;
      if (r.rest) rest.push(r.rest);
    }
  }
  return { stored: Buffer.concat(stored), doneCount, error, rest: Buffer.concat(rest) };
}

/** True if buf holds a CR not followed by LF, or an LF not preceded by CR. */
function hasBareLineEnd(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] === 0x0d && buf[i + 1] !== 0x0a) return true;
    if (buf[i] === 0x0a && buf[i - 1] !== 0x0d) return true;
  }
  return false;
}

test("property: InputBuffer never throws, and any split gives the same lines", () => {
  fc.assert(
    fc.property(split, fc.integer({ min: 1, max: 60 }), ([buf, cuts], max) => {
      const whole = lines([buf], max);
      const pieces = lines(chunksOf(buf, cuts), max);
      assert.deepEqual(pieces.lines, whole.lines);
      // An error found with everything present may show up as "need more" in pieces only if
      // the data ended first; both saw all bytes here, so the outcomes are equal.
      assert.equal(pieces.error, whole.error);
      for (const l of whole.lines) {
        assert.ok(l.length <= max);
        assert.ok(!l.includes("\r") && !l.includes("\n"));
      }
    }),
    { numRuns: runs(500) },
  );
});

for (const mode of ["reject", "normalize"] as const) {
  test(`property (${mode}): DataReader never throws; done at most once; splits do not change the outcome`, () => {
    fc.assert(
      fc.property(split, ([buf, cuts]) => {
        const whole = data([buf], mode);
        const pieces = data(chunksOf(buf, cuts), mode);
        assert.ok(whole.doneCount <= 1 && pieces.doneCount <= 1);
        assert.deepEqual(pieces.stored, whole.stored);
        assert.equal(pieces.doneCount, whole.doneCount);
        assert.equal(pieces.error, whole.error);
        assert.deepEqual(pieces.rest, whole.rest);
        assert.ok(!hasBareLineEnd(whole.stored), "stored data has CRLF line ends only");
      }),
      { numRuns: runs(500) },
    );
  });

  test(`property (${mode}): the end is exactly the first CRLF.CRLF, counting the DATA CRLF`, () => {
    fc.assert(
      fc.property(stream, (buf) => {
        const r = data([buf], mode);
        const framed = Buffer.concat([Buffer.from("\r\n"), buf]);
        const term = framed.indexOf("\r\n.\r\n");
        const bareAt = mode === "reject" ? firstBareLineEnd(framed) : -1;
        if (bareAt >= 0 && (term < 0 || bareAt < term + 2)) {
          assert.equal(r.error, "bare-line-end");
          assert.equal(r.doneCount, 1);
          return;
        }
        if (term < 0) {
          assert.equal(r.doneCount, 0);
        } else {
          assert.equal(r.doneCount, 1);
          assert.deepEqual(r.rest, framed.subarray(term + 5));
        }
      }),
      { numRuns: runs(1000) },
    );
  });
}

function firstBareLineEnd(buf: Buffer): number {
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] === 0x0d && i + 1 < buf.length && buf[i + 1] !== 0x0a) return i;
    if (buf[i] === 0x0a && buf[i - 1] !== 0x0d) return i;
  }
  return -1;
}

test("property: dot-stuffed CRLF text round-trips through the DATA reader", () => {
  const line = fc.array(fc.integer({ min: 0x20, max: 0x7e }), { maxLength: 70 }).map((b) => Buffer.from(b).toString("latin1"));
  fc.assert(
    fc.property(fc.array(line, { maxLength: 20 }), (textLines) => {
      const message = textLines.map((l) => l + "\r\n").join("");
      const wire = textLines.map((l) => (l.startsWith(".") ? "." + l : l) + "\r\n").join("") + ".\r\n";
      const r = data([Buffer.from(wire, "latin1")], "reject");
      assert.equal(r.doneCount, 1);
      assert.equal(r.error, undefined);
      assert.equal(r.stored.toString("latin1"), message);
    }),
    { numRuns: runs(300) },
  );
});

test("property: the size limit holds and too-big still finds the terminator", () => {
  fc.assert(
    fc.property(stream, fc.integer({ min: 0, max: 50 }), (buf, max) => {
      const r = data([buf, Buffer.from("\r\n.\r\n")], "normalize", max);
      assert.ok(r.stored.length <= max);
      assert.equal(r.doneCount, 1);
    }),
    { numRuns: runs(300) },
  );
});

test("property: HeaderCollector output is prefix + input for any split; holds at most the limit; hook once", () => {
  fc.assert(
    fc.property(split, fc.integer({ min: 0, max: 120 }), ([buf, cuts], max) => {
      const hc = new HeaderCollector({ maxHeaderBytes: max });
      let calls = 0;
      hc.setHeaderEndHook(() => {
        calls++;
        return Buffer.from("P: 1\r\n");
      });
      const out: Buffer[] = [];
      let held = 0;
      for (const chunk of chunksOf(buf, cuts)) {
        const o = hc.push(chunk);
        held = o.length === 0 ? held + chunk.length : 0;
        assert.ok(held <= max, "held bytes within the limit");
        out.push(...o);
      }
      out.push(...hc.finish());
      assert.equal(calls, 1);
      assert.deepEqual(Buffer.concat(out), Buffer.concat([Buffer.from("P: 1\r\n"), buf]));
    }),
    { numRuns: runs(500) },
  );
});

interface ChunkRun {
  stored: Buffer;
  error?: ChunkTextError;
}
function chunkText(chunks: Buffer[], mode: "reject" | "normalize", maxLineLength = 1000): ChunkRun {
  const reader = new ChunkTextReader({ maxLineLength, bareLineEnds: mode });
  const stored: Buffer[] = [];
  for (const chunk of [...chunks, null]) {
    const r = chunk === null ? reader.end() : reader.push(chunk);
    stored.push(...r.data);
    if (r.error) return { stored: Buffer.concat(stored), error: r.error };
  }
  return { stored: Buffer.concat(stored) };
}

for (const mode of ["reject", "normalize"] as const) {
  test(`property (${mode}): the BDAT text reader gives the same result for any split; only CRLF line ends come out`, () => {
    fc.assert(
      fc.property(split, fc.integer({ min: 3, max: 40 }), ([buf, cuts], max) => {
        const whole = chunkText([buf], mode, max);
        const pieces = chunkText(chunksOf(buf, cuts), mode, max);
        assert.equal(pieces.error, whole.error);
        if (!whole.error) {
          assert.deepEqual(pieces.stored, whole.stored);
          assert.ok(!hasBareLineEnd(whole.stored), "stored text has CRLF line ends only");
          assert.ok(whole.stored.length === 0 || whole.stored.subarray(-2).equals(Buffer.from("\r\n")), "the last line is ended");
          for (const line of whole.stored.toString("latin1").split("\r\n")) assert.ok(line.length <= max - 2, "no line over the limit");
        }
        if (whole.error === undefined) assert.ok(mode === "normalize" || !hasBareLineEnd(buf), "a bare line end in reject mode is an error");
      }),
      { numRuns: runs(500) },
    );
  });
}

test("property: what BDAT stores is what our relay sends (the outbound encoder changes nothing but the dots)", () => {
  fc.assert(
    fc.property(split, ([buf, cuts]) => {
      const r = chunkText(chunksOf(buf, cuts), "normalize", 1 << 20);
      assert.equal(r.error, undefined);
      const wire = encodeData(r.stored).toString("latin1");
      const unstuffed = wire
        .slice(0, -3)
        .split("\r\n")
        .slice(0, -1)
        .map((l) => (l.startsWith(".") ? l.slice(1) : l) + "\r\n")
        .join("");
      assert.equal(unstuffed, r.stored.toString("latin1"));
    }),
    { numRuns: runs(500) },
  );
});

test("property: parseCommand never throws and never echoes raw bytes into a reply", () => {
  fc.assert(
    fc.property(stream, (buf) => {
      const cmd = parseCommand(buf);
      if ("reply" in cmd) {
        for (const l of cmd.reply.lines) assert.match(l, /^[\x20-\x7e]*$/);
      }
    }),
    { numRuns: runs(1000) },
  );
});
