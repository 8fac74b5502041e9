/**
 * The BDAT chunk phase on its own (src/smtp/chunk-phase.ts, src/smtp/chunked-message.ts): where
 * each chunk leaves the session and what it answers, with an intake that only records.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { endChunk, takeChunkOctets, type ChunkPhase } from "../../src/smtp/chunk-phase.js";
import { ChunkedMessage } from "../../src/smtp/chunked-message.js";
import { refusal } from "../../src/smtp/refusals.js";
import type { MessageIntake, Transaction } from "../../src/smtp/message-intake.js";
import type { CommandPhase } from "../../src/smtp/session-phase.js";

const hello = { name: "client.example.net", esmtp: true };
const tx = { sender: { address: "a@example.org" }, recipients: [{ address: "b@example.org" }] } as unknown as Transaction;
const log = { info: () => undefined, warn: () => undefined };

function rig(messageSize = 1000) {
  const stored: string[] = [];
  let aborted = 0;
  const intake = {
    refused: undefined,
    get size() {
      return stored.join("").length;
    },
    add: (b: Buffer) => void stored.push(b.toString("latin1")),
    written: async () => undefined,
    abort: async () => void aborted++,
  } as unknown as MessageIntake;
  const message = new ChunkedMessage(intake, { textLineLength: 1000, messageSize }, "reject");
  const bdat = { kind: "bdat", hello, tx, message } as const;
  const chunk = (size: number, last: boolean): ChunkPhase => ({ kind: "chunk", chunk: { remaining: size, last }, resume: bdat });
  return { intake, bdat, chunk, stored, aborted: () => aborted };
}

test("a chunk in two pieces: more, then 250 and back to bdat", async () => {
  const r = rig();
  const phase = r.chunk(6, false);
  assert.deepEqual(await takeChunkOctets(phase, Buffer.from("ab\r"), log), { kind: "more" });
  const end = await takeChunkOctets(phase, Buffer.from("\ncd"), log);
  assert.equal(end.kind, "reply");
  if (end.kind !== "reply") return;
  assert.equal(end.next, r.bdat);
  assert.equal(end.reply.code, 250);
  assert.equal(r.stored.join(""), "ab\r\ncd");
});

test("the LAST chunk finishes the message (its last line gets a CRLF) and goes back to greeted", async () => {
  const r = rig();
  const end = await takeChunkOctets(r.chunk(2, true), Buffer.from("xy"), log);
  assert.deepEqual(end.kind === "finish" && [end.next, end.intake, end.error], [{ kind: "greeted", hello }, r.intake, undefined]);
  assert.equal(r.stored.join(""), "xy\r\n");
});

test("a bare LF finishes the message at once with bare-line-end, whatever is left of the chunk", async () => {
  const r = rig();
  const end = await takeChunkOctets(r.chunk(10, false), Buffer.from("a\nb"), log);
  assert.deepEqual(end.kind === "finish" && end.error, "bare-line-end");
});

test("too big: the chunk is answered 552 5.3.4, the message dropped, the phase back to greeted", async () => {
  const r = rig(4);
  const end = await takeChunkOctets(r.chunk(6, false), Buffer.from("abcdef"), log);
  assert.equal(end.kind, "reply");
  if (end.kind !== "reply") return;
  assert.deepEqual([end.reply.code, end.reply.enhanced, end.next], [552, "5.3.4", { kind: "greeted", hello }]);
  assert.equal(r.aborted(), 1);
});

test("a refused BDAT: its octets are read and dropped, then the refusal, back in the phase it came from", async () => {
  const resume: CommandPhase = { kind: "greeted", hello };
  const phase: ChunkPhase = { kind: "chunk", chunk: { remaining: 3, last: true, refusal: refusal("needMail") }, resume };
  assert.deepEqual(await takeChunkOctets(phase, Buffer.from("a\nb"), log), { kind: "reply", next: resume, reply: refusal("needMail") });
  const empty: ChunkPhase = { kind: "chunk", chunk: { remaining: 0, last: false, refusal: refusal("needRcpt") }, resume };
  assert.deepEqual(endChunk(empty, log), { kind: "reply", next: resume, reply: refusal("needRcpt") });
});
