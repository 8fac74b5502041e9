/**
 * Fuzzing the session state machine the way the connection layer drives it: arbitrary byte streams
 * (SMTP-shaped tokens mixed with junk), split at arbitrary points, through the line buffer into the
 * Session, DATA bytes into receiveData. Whatever arrives, the session never throws, every reply
 * carries a well-formed enhanced status code (except greeting/EHLO/334/354), one DATA gives at
 * most one message, and no spool file is left open once the connection is gone. Part of the input
 * comes from the dialog files (test/dialogs/*.txt): every new dialog widens this fuzzer.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { InputBuffer } from "../../src/smtp/input-buffer.js";
import type { SessionOutput } from "../../src/smtp/session.js";
import { Harness, TLS, assertWellFormed, plain, type HarnessOptions } from "./session-helpers.js";
import { runs } from "./fuzz-config.js";
import { loadDialogCorpus } from "../dialogs/corpus.js";

/** The dialogs' writes, their users renamed to the harness's alice (so their logins work here). */
const dialogs = loadDialogCorpus({ address: "alice@example.org", password: "alice-secret" });
const dialogWrite = fc.constantFrom(...dialogs.writes.map((b) => b.toString("latin1")));

const token = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      "EHLO client.test\r\n",
      "HELO client.test\r\n",
      "MAIL FROM:<a@client.test>\r\n",
      "MAIL FROM:<alice@example.org>\r\n",
      "MAIL FROM:<> SIZE=10 BODY=8BITMIME\r\n",
      "RCPT TO:<bob@example.org>\r\n",
      "RCPT TO:<x@remote.test>\r\n",
      "RCPT TO:<bob@example.org> NOTIFY=SUCCESS ORCPT=rfc822;bob+0D+0A@example.org\r\n",
      "DATA\r\n",
      "RSET\r\n",
      "NOOP\r\n",
      "QUIT\r\n",
      "STARTTLS\r\n",
      "VRFY bob\r\n",
      "HELP\r\n",
      `AUTH PLAIN ${plain("alice@example.org", "alice-secret")}\r\n`,
      `AUTH PLAIN ${plain("alice@example.org", "wrong")}\r\n`,
      "AUTH PLAIN\r\n",
      "AUTH LOGIN\r\n",
      "AUTH CRAM-MD5\r\n",
      "*\r\n",
      "AUTH SCRAM-SHA-256 biwsbj1hbGljZUBleGFtcGxlLm9yZyxyPXh5eg==\r\n",
      "YWxpY2VAZXhhbXBsZS5vcmc=\r\n",
      "Subject: hi\r\n",
      "\r\n",
      ".\r\n",
      "..\r\n",
      "Received: from x\r\n",
      "GET / HTTP/1.1\r\n",
    ),
  },
  { weight: 2, arbitrary: fc.constantFrom("\r\n.\r\n", "\n.\n", "\r.\r", "\r\n.\r", ".\n", "\r", "\n", "\0", "\xff", ".") },
  { weight: 3, arbitrary: dialogWrite },
  { weight: 1, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 30 }).map((b) => Buffer.from(b).toString("latin1")) },
);
const bodyToken = fc.oneof(
  fc.constantFrom("Subject: hi\r\n", "From: <alice@example.org>\r\n", "\r\n", "text\r\n", "..\r\n", ".x\r\n", " folded\r\n"),
  fc.constantFrom("\0", "\xff\xfe", "\n", "\r", "\n.\n", "\r.\r", "Received: from x\r\n", "MAIL FROM:<z@evil.test>\r\n"),
  fc.string({ maxLength: 20 }),
);
/** One transaction, well-formed enough to reach DATA (so the interesting states are visited). */
const transaction = fc
  .tuple(fc.array(bodyToken, { maxLength: 8 }), fc.constantFrom("\r\n.\r\n", ".\r\n", "\r\n.\r\n", "\n.\n", "\r.\r", ""))
  .map(([body, end]) => ["MAIL FROM:<alice@example.org>\r\n", "RCPT TO:<bob@example.org>\r\n", "DATA\r\n", ...body, end]);
const opening: Record<string, string[]> = {
  mta: ["EHLO client.test\r\n"],
  submission: ["EHLO client.test\r\n", "STARTTLS\r\n", "EHLO client.test\r\n", `AUTH PLAIN ${plain("alice@example.org", "alice-secret")}\r\n`],
  submissions: ["EHLO client.test\r\n", `AUTH PLAIN ${plain("alice@example.org", "alice-secret")}\r\n`],
};
/** The dialogs' conversations on this listener (any, if none), as the dialog wrote them. */
const dialogConversation = (mode: string) => {
  const own = dialogs.conversations.filter((c) => c.listener === mode);
  return fc.constantFrom(...(own.length > 0 ? own : dialogs.conversations).map((c) => c.writes.map((w) => w.toString("latin1"))));
};
/** A plausible conversation with a few hostile tokens inserted anywhere, a dialog's, or pure noise. */
const conversation = (mode: string) =>
  fc
    .oneof(
      {
        weight: 3,
        arbitrary: fc
          .tuple(fc.array(transaction, { minLength: 1, maxLength: 3 }), fc.array(fc.tuple(fc.nat(), token), { maxLength: 3 }))
          .map(([txs, inserts]) => {
            const tokens = [...opening[mode]!, ...txs.flat(), "QUIT\r\n"];
            for (const [at, t] of inserts) tokens.splice(at % (tokens.length + 1), 0, t);
            return tokens;
          }),
      },
      {
        weight: 2,
        arbitrary: fc.tuple(dialogConversation(mode), fc.array(fc.tuple(fc.nat(), token), { maxLength: 3 })).map(([writes, inserts]) => {
          const tokens = [...writes];
          for (const [at, t] of inserts) tokens.splice(at % (tokens.length + 1), 0, t);
          return tokens;
        }),
      },
      { weight: 1, arbitrary: fc.array(token, { maxLength: 40 }) },
    )
    .map((t) => Buffer.from(t.join(""), "latin1"));
const listener = fc.constantFrom<HarnessOptions>({ mode: "mta" }, { mode: "submission" }, { mode: "submissions" }, { mode: "mta", bareLineEnds: "normalize" });
const session = listener.chain((opts) => fc.tuple(fc.constant(opts), conversation(opts.mode!)));
const cuts = fc.array(fc.nat(), { maxLength: 10 });

function chunksOf(buf: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...at, buf.length]) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  return out;
}

interface Run {
  replies: string[];
  dataStarts: number;
  closed: boolean;
}

/** Feeds the chunks as SmtpConnection does: lines while commanding, raw bytes while in DATA. */
async function drive(h: Harness, chunks: Buffer[]): Promise<Run> {
  const input = new InputBuffer();
  const run: Run = { replies: [], dataStarts: 0, closed: false };
  const record = (out: SessionOutput) => {
    for (const r of out.replies) {
      assertWellFormed(r);
      run.replies.push(`${r.code} ${r.enhanced ?? ""} ${r.lines.join("|")}`);
      if (r.code === 354) run.dataStarts++;
    }
    if (out.action === "starttls") h.session.tlsStarted(TLS); // the handshake, as if it succeeded
    if (out.action === "close") run.closed = true;
  };
  outer: for (const chunk of chunks) {
    input.push(chunk);
    for (;;) {
      const expecting = String(h.session.expecting);
      if (expecting === "data") {
        const all = input.takeAll();
        if (all.length === 0) break;
        const r = await h.session.receiveData(all);
        if (r === null) break;
        record(r.output);
        if (r.rest && r.rest.length > 0) input.push(r.rest);
      } else if (expecting === "command" || expecting === "auth-response") {
        const line = input.takeLine(h.session.lineLimit);
        if (line === null) break;
        if (line.kind === "error") record(h.session.lineError(line.error));
        else record(await h.session.handleLine(line.line));
      } else {
        break outer; // a phase this fuzzer does not drive (BDAT chunks): end the connection here
      }
      if (run.closed) break outer;
    }
  }
  await h.session.abort(); // the connection ends, whatever state the session is in
  return run;
}

test("fuzz: the session survives any byte stream split anywhere; replies well-formed; one message per DATA at most", async () => {
  await fc.assert(
    fc.asyncProperty(session, cuts, async ([opts, buf], points) => {
      const h = new Harness({ ...opts, limits: { authFailureDelayMs: 0 } });
      const run = await drive(h, chunksOf(buf, points));
      const acks = run.replies.filter((r) => r.startsWith("250 2.0.0 Ok: queued as")).length;
      assert.equal(h.queued.length, acks, "every queued message was answered 250, and only those");
      assert.ok(h.queued.length <= run.dataStarts, "never more messages than DATA commands answered 354");
      for (const w of h.spools) {
        assert.ok(w.commits <= 1, "a spool file is committed at most once");
        assert.ok(w.commits === 1 || w.aborts >= 1, "every uncommitted spool file is removed");
        assert.equal(w.lateCalls, 0, "no write after commit or abort");
      }
    }),
    { numRuns: runs(300) },
  );
});

test("fuzz: the same stream gives the same replies however it is split", async () => {
  await fc.assert(
    fc.asyncProperty(session, cuts, async ([opts, buf], points) => {
      const whole = await drive(new Harness({ ...opts, limits: { authFailureDelayMs: 0 } }), [buf]);
      const split = await drive(new Harness({ ...opts, limits: { authFailureDelayMs: 0 } }), chunksOf(buf, points));
      // Queue ids and generated Message-IDs differ between runs; everything else must not.
      const norm = (r: string[]) => r.map((x) => x.replace(/queued as \S+/, "queued as ID").replace(/^334 .*/, "334"));
      assert.deepEqual(norm(split.replies), norm(whole.replies));
    }),
    { numRuns: runs(150) },
  );
});
