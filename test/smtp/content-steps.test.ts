/**
 * Content steps (src/smtp/content-steps.ts): a step sees the stored message once as it streams,
 * adds header fields that end up on top of the message as every reader gets it from the queue
 * store, or refuses it — for DATA and BDAT alike — and the pipeline itself finds the header
 * section's end across chunks, stacks the steps' fields and fails closed on a broken step.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { ContentPipeline, type ContentContext, type ContentStep, type StepRun } from "../../src/smtp/content-steps.js";
import { reply } from "../../src/smtp/reply.js";
import type { HeaderInfo } from "../../src/smtp/headers.js";
import { NO_FIELDS } from "../../src/smtp/message-intake.js";
import { Spool } from "../../src/queue/spool.js";
import type { NewEnvelope } from "../../src/queue/types.js";
import { codes, ready, type Harness } from "./session-helpers.js";
import { tempDir } from "../queue/helpers.js";

/** Counts body octets and says so in a field on top; remembers what it was told. */
function bodyCounter(seen: ContentContext[] = []): ContentStep {
  return {
    name: "body-counter",
    begin(ctx) {
      seen.push(ctx);
      let bytes = 0;
      return {
        body: (chunk) => void (bytes += chunk.length),
        finish: async () => ({ prependHeaders: [`X-Body-Bytes: ${bytes}`] }),
      };
    },
  };
}

const refuser: ContentStep = {
  name: "refuser",
  begin: () => ({
    body: () => undefined,
    finish: async () => ({ refuse: { reply: reply(550, "5.7.1", "Message content rejected"), reason: "test content check" } }),
  }),
};

async function withStore(steps: ContentStep[]): Promise<{ h: Harness; spool: Spool; queued: () => Promise<string[]> }> {
  const spool = new Spool(await tempDir(), { fsync: false });
  await spool.init();
  const h = await ready({ contentSteps: steps, openSpool: () => spool.openWriter() });
  await h.expect(["MAIL FROM:<sender@client.test>", "250 2.1.0"], ["RCPT TO:<bob@example.org>", "250 2.1.5"]);
  const queued = async () => [...(await readdir(join(spool.dir, "msg"))), ...(await readdir(join(spool.dir, "env")))];
  return { h, spool, queued };
}

/** The message as delivery reads it from the store. */
async function stored(spool: Spool, id: string): Promise<string> {
  const env = await spool.readEnvelope(id);
  return (await buffer(spool.message(env).open())).toString("latin1");
}

/** The body as stored, and as sent in DATA (dot-stuffed, RFC 5321 §4.5.2). */
const BODY = "line one\r\n.dotted\r\n" + ("x".repeat(76) + "\r\n").repeat(70);
const WIRE_BODY = BODY.replace("\r\n.dotted", "\r\n..dotted");

test("DATA: a step's field is on top of the stored message, above our Received:, the body intact", async () => {
  const seen: ContentContext[] = [];
  const { h, spool } = await withStore([bodyCounter(seen)]);
  assert.deepEqual(codes(await h.send("DATA")), ["354"]);
  const wire = "Subject: counted\r\n\r\n" + WIRE_BODY + ".\r\n";
  const { output } = await h.feed([Buffer.from(wire.slice(0, 30)), Buffer.from(wire.slice(30))]);
  assert.deepEqual(codes(output), ["250 2.0.0"]);
  const id = /queued as (\S+)/.exec(output.replies[0]!.lines[0]!)![1]!;
  const body = BODY;
  const text = await stored(spool, id);
  assert.match(text, new RegExp(`^X-Body-Bytes: ${Buffer.byteLength(body)}\\r\\nReceived: from `));
  assert.ok(text.endsWith("\r\nSubject: counted\r\n\r\n" + body), "the stored body is the body sent");
  assert.equal(spool.message(await spool.readEnvelope(id)).size, Buffer.byteLength(text));
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.headers.get("subject"), "counted");
  assert.equal(seen[0]!.envelope.mailFrom, "sender@client.test");
  assert.deepEqual(
    seen[0]!.envelope.recipients.map((r) => r.address),
    ["bob@example.org"],
  );
  assert.match(seen[0]!.headerSection.toString(), /^Received: [\s\S]*\r\nSubject: counted\r\n\r\n$/);
});

test("BDAT: the same field on top, binary body intact across chunks", async () => {
  const { h, spool } = await withStore([bodyCounter()]);
  const binary = Buffer.from([0x00, 0xff, 0x2e, 0x0d, 0x0a, 0x80, 0x0d, 0x0a]);
  const first = Buffer.from("Subject: chunked\r\n\r\n.not stuffed\r\n");
  assert.deepEqual(codes(await h.send(`BDAT ${first.length}`)), []);
  assert.deepEqual(codes((await h.session.receiveChunk(first))!), ["250 2.0.0"]);
  const out = await h.send(`BDAT ${binary.length} LAST`);
  assert.deepEqual(out.replies, []);
  const done = await h.session.receiveChunk(binary);
  assert.deepEqual(codes(done!), ["250 2.0.0"]);
  const id = /queued as (\S+)/.exec(done!.replies[0]!.lines[0]!)![1]!;
  const env = await spool.readEnvelope(id);
  const bytes = await buffer(spool.message(env).open());
  const body = Buffer.concat([Buffer.from(".not stuffed\r\n"), binary]);
  assert.ok(bytes.toString("latin1").startsWith(`X-Body-Bytes: ${body.length}\r\nReceived: from `), bytes.toString("latin1").slice(0, 80));
  assert.deepEqual(bytes.subarray(bytes.length - body.length), body);
  assert.equal(env.headerPrefix, `X-Body-Bytes: ${body.length}\r\n`);
});

test("a step that refuses: its reply, nothing queued, the session goes on", async () => {
  for (const verb of ["DATA", "BDAT"] as const) {
    const { h, spool, queued } = await withStore([bodyCounter(), refuser]);
    let final: string[];
    if (verb === "DATA") {
      assert.deepEqual(codes(await h.send("DATA")), ["354"]);
      final = codes((await h.data("Subject: no\r\n\r\nbad content\r\n.\r\n")).output);
    } else {
      const msg = Buffer.from("Subject: no\r\n\r\nbad content\r\n");
      assert.deepEqual(codes(await h.send(`BDAT ${msg.length} LAST`)), []);
      final = codes((await h.session.receiveChunk(msg))!);
    }
    assert.deepEqual(final, ["550 5.7.1"], verb);
    assert.deepEqual(await queued(), [], `${verb}: no file left in the store`);
    assert.deepEqual(await spool.list(), []);
    assert.equal(h.logs.filter((l) => l.fields.event === "queued").length, 0);
    assert.ok(h.logs.some((l) => l.fields.event === "data-refused" && l.fields.reason === "test content check"));
    assert.equal(await h.cmd("NOOP"), "250 2.0.0");
  }
});

test("a step that throws gets 451 4.3.0 and nothing is queued; a message refused earlier never reaches finish()", async () => {
  const broken: ContentStep = { name: "broken", begin: () => ({ body: () => undefined, finish: async () => Promise.reject(new Error("boom")) }) };
  const { h, queued } = await withStore([broken]);
  assert.deepEqual(codes(await h.send("DATA")), ["354"]);
  assert.deepEqual(codes((await h.data("Subject: x\r\n\r\nbody\r\n.\r\n")).output), ["451 4.3.0"]);
  assert.deepEqual(await queued(), []);
  assert.ok(h.logs.some((l) => l.fields.event === "content-step-error" && l.fields.step === "broken"));

  let finished = 0;
  let aborted = 0;
  const watcher: ContentStep = {
    name: "watcher",
    begin: () => ({ body: () => undefined, finish: async () => (finished++, {}), abort: () => void aborted++ }),
  };
  const loop = await withStore([watcher]);
  assert.deepEqual(codes(await loop.h.send("DATA")), ["354"]);
  const hops = "Received: from x by y; Thu, 1 Jan 2026 00:00:00 +0000\r\n".repeat(12);
  assert.deepEqual(codes((await loop.h.data(hops + "\r\nbody\r\n.\r\n")).output), ["554 5.4.6"]);
  assert.equal(finished, 0);
  assert.equal(aborted, 1);
});

// ---- the pipeline on its own ---------------------------------------------------------------

const NO_HEADERS: HeaderInfo = NO_FIELDS;
const ENVELOPE: NewEnvelope = { mailFrom: "a@b.test", client: { ip: "127.0.0.1", helo: "h", listener: "mta" }, recipients: [{ address: "c@d.test" }] };

function recorder(name: string, fields: string[], log: string[]): ContentStep {
  return {
    name,
    begin(ctx) {
      log.push(`${name} header ${JSON.stringify(ctx.headerSection.toString())}`);
      const run: StepRun = {
        body: (chunk) => void log.push(`${name} body ${JSON.stringify(chunk.toString())}`),
        finish: async () => ({ prependHeaders: fields }),
      };
      return run;
    },
  };
}

test("pipeline: the header section's end is found across chunks; fields stack with the last step's on top", async () => {
  const log: string[] = [];
  const p = new ContentPipeline(
    [recorder("a", ["A: 1", "A: 2"], log), recorder("b", ["B: 1\r\n folded"], log)],
    () => ({ envelope: ENVELOPE, headers: NO_HEADERS }),
    1000,
  );
  for (const piece of ["Subject: s\r", "\n\r", "\nbo", "dy\r\n"]) p.push(Buffer.from(piece));
  assert.deepEqual(await p.finish(), { ok: true, headerPrefix: "B: 1\r\n folded\r\nA: 1\r\nA: 2\r\n" });
  assert.deepEqual(log, [
    'a header "Subject: s\\r\\n\\r\\n"',
    'b header "Subject: s\\r\\n\\r\\n"',
    'a body "bo"',
    'b body "bo"',
    'a body "dy\\r\\n"',
    'b body "dy\\r\\n"',
  ]);
});

test("pipeline: no header section, all header, or too long to hold; no steps means nothing to add", async () => {
  const cases: [string[], string, string[]][] = [
    [["\r\nbody"], "\r\n", ["body"]],
    [["Subject: only"], "Subject: only", []],
    [["X".repeat(30), "Y".repeat(10)], "X".repeat(30), ["Y".repeat(10)]],
  ];
  for (const [pieces, header, body] of cases) {
    const log: string[] = [];
    const p = new ContentPipeline([recorder("a", [], log)], () => ({ envelope: ENVELOPE, headers: NO_HEADERS }), 20);
    for (const piece of pieces) p.push(Buffer.from(piece));
    assert.deepEqual(await p.finish(), { ok: true, headerPrefix: undefined });
    assert.deepEqual(log, [`a header ${JSON.stringify(header)}`, ...body.map((b) => `a body ${JSON.stringify(b)}`)]);
  }
  const none = new ContentPipeline([], () => ({ envelope: ENVELOPE, headers: NO_HEADERS }), 20);
  none.push(Buffer.from("Subject: x\r\n\r\nbody"));
  assert.deepEqual(await none.finish(), { ok: true });
});

test("pipeline: a field that is not a header field line fails the message (a step must not inject lines)", async () => {
  for (const bad of ["no colon here", "X: a\r\nInjected: b", "X: bare\nLF", "Bad Name: x", ""]) {
    const p = new ContentPipeline([recorder("a", [bad], [])], () => ({ envelope: ENVELOPE, headers: NO_HEADERS }), 100);
    p.push(Buffer.from("S: x\r\n\r\nb"));
    const outcome = await p.finish();
    assert.equal(outcome.ok, false, JSON.stringify(bad));
    assert.ok(!outcome.ok && "error" in outcome && outcome.step === "a");
  }
});

test("pipeline: any split of the bytes (every cut point, and byte by byte) finds the same header section and body", async () => {
  const messages = ["Subject: s\r\nTo: t\r\n\r\nbody\r\n\r\nmore\r\n", "\r\nbody only\r\n", "Subject: only header\r\n", "A: 1\r\n\r\n"];
  const seen = async (pieces: Buffer[]) => {
    const log: string[] = [];
    const p = new ContentPipeline([recorder("a", [], log)], () => ({ envelope: ENVELOPE, headers: NO_HEADERS }), 1000);
    for (const piece of pieces) p.push(piece);
    await p.finish();
    const header = log[0]!;
    const body = log
      .slice(1)
      .map((l) => JSON.parse(l.slice("a body ".length)) as string)
      .join("");
    return { header, body };
  };
  for (const text of messages) {
    const bytes = Buffer.from(text);
    const whole = await seen([bytes]);
    assert.deepEqual(await seen([...bytes].map((b) => Buffer.from([b]))), whole, `byte by byte: ${JSON.stringify(text)}`);
    for (let cut = 0; cut <= bytes.length; cut++) {
      assert.deepEqual(await seen([bytes.subarray(0, cut), bytes.subarray(cut)]), whole, `cut at ${cut}: ${JSON.stringify(text)}`);
    }
  }
});
