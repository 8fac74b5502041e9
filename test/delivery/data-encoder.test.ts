import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { DataEncoder, encodeData } from "../../src/delivery/data-encoder.js";

const b = (s: string) => Buffer.from(s, "latin1");

/** What the receiver reconstructs: strip ".CRLF", undo dot-stuffing at line starts. */
function receive(wire: Buffer): Buffer {
  assert.ok(wire.subarray(-3).equals(b(".\r\n")));
  const body = wire.subarray(0, -3).toString("latin1");
  return b(
    body
      .split("\r\n")
      .map((line) => (line.startsWith(".") ? line.slice(1) : line))
      .join("\r\n"),
  );
}

/** The reference: every bare CR or LF becomes CRLF, and a non-empty last line is closed. */
function normalize(input: Buffer): Buffer {
  let s = input.toString("latin1").replace(/\r\n|\r|\n/g, "\r\n");
  if (s.length > 0 && !s.endsWith("\r\n")) s += "\r\n";
  return b(s);
}

function hasBareLineBreak(wire: Buffer): boolean {
  for (let i = 0; i < wire.length; i++) {
    if (wire[i] === 0x0d && wire[i + 1] !== 0x0a) return true;
    if (wire[i] === 0x0a && wire[i - 1] !== 0x0d) return true;
  }
  return false;
}

test("lines starting with '.' are stuffed (RFC 5321 §4.5.2)", () => {
  assert.equal(encodeData(b(".\r\n..x\r\na.b\r\n.")).toString("latin1"), "..\r\n...x\r\na.b\r\n..\r\n.\r\n");
});

test("bare LF and bare CR become CRLF (SECURITY rule 1: no smuggling through our client)", () => {
  assert.equal(encodeData(b("a\nb\rc\r\n\n.\n")).toString("latin1"), "a\r\nb\r\nc\r\n\r\n..\r\n.\r\n");
  // The classic smuggling payload is neutralised into harmless stuffed lines.
  const smuggle = encodeData(b("x\n.\nMAIL FROM:<evil@x>\r\n"));
  assert.equal(smuggle.toString("latin1"), "x\r\n..\r\nMAIL FROM:<evil@x>\r\n.\r\n");
});

test("state carries across chunk boundaries: CR|LF, CR|., and a dot after a split CRLF", () => {
  const e = new DataEncoder();
  const out = Buffer.concat([e.push(b("a\r")), e.push(b("\n.b\r")), e.push(b(".c\r")), e.push(b("")), e.push(b("\n")), e.end()]);
  assert.equal(out.toString("latin1"), "a\r\n..b\r\n..c\r\n.\r\n");
});

test("8-bit bytes pass unchanged; an empty message is just the terminator", () => {
  const bytes = Buffer.from([0xc3, 0xa9, 0x00, 0xff, 0x80, 0x0d, 0x0a]);
  assert.deepEqual(encodeData(bytes), Buffer.concat([bytes, b(".\r\n")]));
  assert.equal(encodeData(Buffer.alloc(0)).toString(), ".\r\n");
  assert.equal(encodeData(b("no newline")).toString(), "no newline\r\n.\r\n");
  assert.equal(encodeData(b("ends in CR\r")).toString(), "ends in CR\r\n.\r\n");
});

test("property: any bytes, any chunking → no bare CR/LF, the receiver gets the normalised message", () => {
  const bytes = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
  const interesting = fc.array(fc.constantFrom("\r", "\n", ".", "\r\n", "a", "\r\n.", "..", "\xe9"), { maxLength: 60 }).map((parts) => b(parts.join("")));
  fc.assert(
    fc.property(fc.oneof(bytes, interesting), fc.array(fc.nat(), { maxLength: 8 }), (input, cuts) => {
      const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((x, y) => x - y);
      const e = new DataEncoder();
      const parts: Buffer[] = [];
      let prev = 0;
      for (const p of [...points, input.length]) {
        parts.push(e.push(input.subarray(prev, p)));
        prev = p;
      }
      parts.push(e.end());
      const wire = Buffer.concat(parts);
      assert.ok(!hasBareLineBreak(wire));
      assert.deepEqual(wire, encodeData(input), "chunking does not change the output");
      assert.deepEqual(receive(wire), normalize(input));
    }),
    { numRuns: 2000 },
  );
});
