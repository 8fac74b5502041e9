/**
 * Property (docs/SECURITY.md 11.1): what the sender check reads is what every next hop reads.
 *
 * Arbitrary byte streams, biased towards header syntax and line ends, go into a real Session by
 * DATA and by BDAT (split into chunks anywhere), from a logged-in user on the submission and on
 * the mta listener, with bare line ends refused and normalised. The policy's From:/Sender: check
 * is replaced by a recorder that allows everything, so every message the session itself does not
 * refuse is stored. Then the stored spool bytes are turned into what each next hop receives — the
 * outbound DATA stream (src/delivery/data-encoder.ts) as the peer unstuffs it, and the Maildir
 * file (the spool bytes under a Return-Path/Delivered-To prefix, src/delivery/maildir.ts) — and
 * read by:
 *   - a strict RFC 5322 parser written here (lines end only at CRLF, the header section ends at
 *     the first empty line, folding is CRLF + WSP, obsolete WSP before the colon allowed): it must
 *     find exactly the From:/Sender: values the policy was asked about;
 *   - mailparser, a lenient real-world parser (names trimmed with trim(), a colon taken from a
 *     continuation line): every From:/Sender: it finds must be one the policy was asked about.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { simpleParser } from "mailparser";
import { DataEncoder } from "../../src/delivery/data-encoder.js";
import { ALLOW } from "../../src/base/decision.js";
import { ready, codes, type Harness, type HarnessOptions } from "./session-helpers.js";
import { runs } from "./fuzz-config.js";

/** Header-ish pieces: names, separators, every kind of line end, the bytes lenient parsers skip. */
const piece = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom("From", "from", "FROM", "Sender", "Subject", "X", "Fr", "om", "Sen", "der") },
  { weight: 6, arbitrary: fc.constantFrom(":", ": ", " ", "\t", ",", "<", ">", "(", ")", '"', ".", "..") },
  { weight: 8, arbitrary: fc.constantFrom("\r\n", "\r", "\n", "\r\n\r\n", "\r\n ", "\r\n\t", "\n\n", "\r\r\n", "\r\n.\r\n") },
  { weight: 4, arbitrary: fc.constantFrom("alice@example.org", "boss@example.org", "Boss <boss@example.org>", "a@b") },
  {
    weight: 4,
    arbitrary: fc.constantFrom("From: boss@example.org\r\n", "Sender: boss@example.org\r\n", "From : boss@example.org\r\n", "From\r\n : boss@example.org\r\n"),
  },
  { weight: 3, arbitrary: fc.constantFrom("\0", "\x0b", "\x0c", "\xa0", "\xff", "\xc3\xa9", "\x7f", "\x1f") },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 4 }).map((a) => Buffer.from(a).toString("latin1")) },
);
const noise = fc.array(piece, { maxLength: 8 }).map((p) => p.join(""));
/** Mostly well-formed field lines, with the twists: odd names, no colon, bare or folded line ends. */
const fieldLine = fc
  .tuple(
    fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom("From", "Sender", "from", "SENDER", "Subject", "X-Y") },
      { weight: 2, arbitrary: fc.constantFrom("From ", "From\t", "From\x0b", "Fr\0om", "From\xa0", " From", "\tFrom", "From\r\n ", "Fro\rm") },
    ),
    fc.constantFrom(":", ":", ": ", " :", ""),
    fc.array(fc.constantFrom(" ", "alice@example.org", "boss@example.org", "<boss@example.org>", ",", "(c)", '"q"', "\xc3\xa9", "\xff", "\r\n "), {
      maxLength: 4,
    }),
    fc.oneof({ weight: 8, arbitrary: fc.constant("\r\n") }, { weight: 2, arbitrary: fc.constantFrom("\r", "\n", "\r\r\n", "\r\n\t", "") }),
  )
  .map(([name, colon, value, end]) => name + colon + value.join("") + end);
const message = fc
  .oneof(
    {
      weight: 3,
      arbitrary: fc
        .tuple(
          fc.array(fc.oneof({ weight: 4, arbitrary: fieldLine }, { weight: 1, arbitrary: noise }), { maxLength: 8 }),
          fc.constantFrom("", "\r\n", "\r\nbody\r\n", "\r\nFrom: boss@example.org\r\n"),
        )
        .map(([lines, tail]) => lines.join("") + tail),
    },
    { weight: 1, arbitrary: fc.array(piece, { maxLength: 40 }).map((p) => p.join("")) },
  )
  .map((text) => Buffer.from(text, "latin1"));

interface Variant {
  via: "DATA" | "BDAT";
  mode: "submission" | "mta";
  bareLineEnds: "reject" | "normalize";
  headerBytes: number;
}
const variant = fc.record<Variant>({
  via: fc.constantFrom("DATA", "BDAT"),
  mode: fc.constantFrom("submission", "mta"),
  bareLineEnds: fc.constantFrom("reject", "normalize", "normalize"),
  headerBytes: fc.constantFrom(4096, 64),
});

// ---- the next hops' view -------------------------------------------------------------------------

/** What a peer stores from our DATA stream: CRLF lines, the stuffed dots removed, the final "." gone. */
function relayed(spooled: Buffer): Buffer {
  const enc = new DataEncoder();
  const wire = Buffer.concat([enc.push(spooled), enc.end()]);
  const text = wire.toString("latin1");
  assert.ok(text.endsWith("\r\n.\r\n") || text === ".\r\n", "the DATA stream ends with the terminator");
  assert.doesNotMatch(text.replace(/\r\n/g, ""), /[\r\n]/, "no bare CR or LF on the wire (SECURITY.md rule 1)");
  const lines = text.slice(0, -3).split("\r\n").slice(0, -1);
  return Buffer.from(lines.map((l) => (l.startsWith(".") ? l.slice(1) : l) + "\r\n").join(""), "latin1");
}

/** The Maildir file: the spool bytes as they are, under the delivery prefix. */
function maildirFile(spooled: Buffer): Buffer {
  return Buffer.concat([Buffer.from("Return-Path: <alice@example.org>\r\nDelivered-To: bob@example.org\r\n"), spooled]);
}

const utf8 = new TextDecoder("utf-8");

/**
 * A strict RFC 5322 reader: lines end only at CRLF (an unterminated last line is a line too),
 * the header section ends at the first empty line, a line starting with SP or HTAB continues the
 * field before it, a field is name (printable ASCII but ":") *WSP ":" (§3.6.8, obsolete §4.5.3).
 * Other lines are not fields. Values unfolded (CRLF removed) and trimmed, decoded as UTF-8.
 */
function strictSenderValues(msg: Buffer): string[] {
  const text = msg.toString("latin1");
  const end = text.indexOf("\r\n\r\n");
  const head = end < 0 ? text : text.slice(0, end + 2);
  const lines = head.split("\r\n");
  if (lines.at(-1) === "") lines.pop();
  const logical: string[] = [];
  for (const line of lines) {
    if (line === "") break;
    if (/^[ \t]/.test(line)) {
      if (logical.length > 0) logical[logical.length - 1] += "\r\n" + line;
      continue;
    }
    logical.push(line);
  }
  const values: string[] = [];
  for (const l of logical) {
    const m = /^([\x21-\x39\x3b-\x7e]+)[ \t]*:/.exec(l);
    if (!m || !["from", "sender"].includes(m[1]!.toLowerCase())) continue;
    values.push(
      utf8
        .decode(Buffer.from(l.slice(m[0].length), "latin1"))
        .replace(/\r\n/g, "")
        .trim(),
    );
  }
  return values;
}

/** mailparser's From:/Sender: lines, as "the text after the first colon". Empty if it gives up. */
async function lenientSenderValues(msg: Buffer): Promise<string[]> {
  try {
    const parsed = await simpleParser(msg, { skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true, skipTextLinks: true });
    return parsed.headerLines.filter((h) => h.key === "from" || h.key === "sender").map((h) => h.line.slice(h.line.indexOf(":") + 1));
  } catch {
    return [];
  }
}

/** For comparing what different readers make of 8-bit and white space: printable ASCII only. */
const canonical = (v: string) => v.replace(/[^\x21-\x7e]/g, "");

// ---- driving the session -------------------------------------------------------------------------

interface Outcome {
  reply: string;
  /** The values the policy was asked about (From: and Sender:, in order). */
  seen: string[];
  stored?: Buffer;
}

/** `terminator`: what follows the message in DATA ("\r\n.\r\n", or ".\r\n" after CRLF-ended text). */
async function submit(v: Variant, msg: Buffer, cuts: number[], terminator = "\r\n.\r\n"): Promise<Outcome> {
  const seen: string[] = [];
  const opts: HarnessOptions = {
    mode: v.mode,
    tls: true,
    bareLineEnds: v.bareLineEnds,
    limits: { headerBytes: v.headerBytes },
    fromHeaderCheck: (_account, from) => {
      if (from !== undefined) seen.push(from);
      return ALLOW;
    },
  };
  const h: Harness = await ready(opts, "alice@example.org");
  await h.expect(["MAIL FROM:<alice@example.org>", "250 2.1.0"], ["RCPT TO:<bob@remote.example>", "250 2.1.5"]);
  let reply: string;
  if (v.via === "DATA") {
    assert.deepEqual(codes(await h.send("DATA")), ["354"]);
    const wire = Buffer.concat([msg, Buffer.from(terminator)]);
    reply = codes((await h.feed(pieces(wire, cuts))).output)[0]!;
  } else {
    const chunks = pieces(msg, cuts);
    reply = "";
    for (let i = 0; i < chunks.length; i++) {
      const last = i === chunks.length - 1;
      const out = await h.send(`BDAT ${chunks[i]!.length}${last ? " LAST" : ""}`);
      const result = chunks[i]!.length === 0 ? out : await h.session.receiveChunk(chunks[i]!);
      assert.ok(result, "a whole chunk is answered");
      reply = codes(result)[0]!;
      if (!reply.startsWith("250") || result.action === "close") break;
    }
  }
  const spool = h.spools[0];
  return { reply, seen, stored: spool && spool.commits === 1 ? spool.bytes : undefined };
}

/** The stream cut at the given points (empty pieces included: an empty BDAT chunk is legal). */
function pieces(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, buf.length]) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  return out;
}

/** The attacks, always tried first: each delivered a From: the policy never read. */
const bdatSubmission: Variant = { via: "BDAT", mode: "submission", bareLineEnds: "reject", headerBytes: 4096 };
const ATTACKS: [Variant, Buffer, number[]][] = [
  [bdatSubmission, Buffer.from("Subject: hi\rFrom: boss@example.org\r\nTo: bob@remote.example\r\n\r\nbody\r\n"), []],
  [{ ...bdatSubmission, bareLineEnds: "normalize" }, Buffer.from("Subject: hi\rFrom: boss@example.org\r\n\r\nbody\r\n"), [13]],
  [bdatSubmission, Buffer.from("Subject: hi\r\nFrom: boss@example.org"), [5]],
  [{ ...bdatSubmission, via: "DATA" }, Buffer.from("From\x0b: boss@example.org\r\n\r\nbody", "latin1"), []],
  [{ ...bdatSubmission, mode: "mta" }, Buffer.from("From\r\n : boss@example.org\r\n\r\nbody\r\n"), []],
];

test("property (11.1): the From:/Sender: values the policy reads are exactly those every next hop reads, DATA and BDAT", async () => {
  let delivered = 0;
  let withSenders = 0;
  await fc.assert(
    fc.asyncProperty(variant, message, fc.array(fc.nat(), { maxLength: 4 }), async (v, msg, cuts) => {
      const outcome = await submit(v, msg, cuts);
      if (outcome.stored === undefined) {
        assert.notEqual(outcome.reply, "250 2.0.0", "a 250 means the message was committed");
        return;
      }
      assert.equal(outcome.reply, "250 2.0.0");
      delivered++;
      if (outcome.seen.length > 0) withSenders++;
      const seen = [...outcome.seen].sort();
      for (const [hop, bytes] of [
        ["relay", relayed(outcome.stored)],
        ["maildir", maildirFile(outcome.stored)],
      ] as const) {
        assert.deepEqual(strictSenderValues(bytes).sort(), seen, `${hop}: a strict parser reads other From:/Sender: fields than the policy did`);
        const seenCanonical = new Set(outcome.seen.map(canonical));
        for (const value of await lenientSenderValues(bytes)) {
          assert.ok(seenCanonical.has(canonical(value)), `${hop}: mailparser reads a From:/Sender: ${JSON.stringify(value)} the policy never saw`);
        }
      }
    }),
    { numRuns: runs(150), examples: ATTACKS },
  );
  if (process.env.FUZZ_STATS) console.log(`# delivered ${delivered}, with From:/Sender: ${withSenders}`);
  assert.ok(withSenders > 0, "some delivered messages had From:/Sender: fields, so the property compared something");
});

test("property (11.1): DATA and BDAT agree: the same message text gets the same verdict and the same stored bytes", async () => {
  // Text DATA carries unchanged: CRLF lines, no dots (nothing to stuff), no bare CR/LF.
  const line = fc
    .array(fc.constantFrom("From", "Sender", ":", " ", "\t", "boss@example.org", "alice@example.org", "x", "\0", "\xa0", "\x0b"), { maxLength: 8 })
    .map((p) => p.join(""));
  const text = fc.array(line, { maxLength: 8 }).map((ls) => Buffer.from(ls.map((l) => `${l}\r\n`).join(""), "latin1"));
  await fc.assert(
    fc.asyncProperty(text, fc.constantFrom<"submission" | "mta">("submission", "mta"), fc.array(fc.nat(), { maxLength: 3 }), async (msg, mode, cuts) => {
      const base = { mode, bareLineEnds: "reject" as const, headerBytes: 4096 };
      const byData = await submit({ ...base, via: "DATA" }, msg, cuts, ".\r\n");
      const byBdat = await submit({ ...base, via: "BDAT" }, msg, cuts);
      assert.equal(byBdat.reply, byData.reply);
      assert.deepEqual(byBdat.seen, byData.seen);
      const comparable = (o: Outcome) => o.stored?.toString("latin1").replace(/\r\nMessage-ID: <[^>]*>/, "");
      assert.equal(comparable(byBdat), comparable(byData));
    }),
    { numRuns: runs(60) },
  );
});
