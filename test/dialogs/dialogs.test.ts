/**
 * Runs every test/dialogs/*.txt against the real `postern serve`: one server per file (with the
 * file's @config and @user lines), one connection per dialog. Besides each dialog's own
 * expectations, every file must keep three invariants (SECURITY.md):
 *   - every reply carries an enhanced status code (except the greeting, EHLO/HELO, 334 and 354);
 *   - the server queued exactly the messages it answered "250 ... queued as <id>" (never a second
 *     message from one DATA, never a message answered with an error);
 *   - nothing half-received is left in the spool once the connections are gone: no message file
 *     in msg/ without its envelope, nothing in tmp/.
 * A `delivered` step checks what reached a local Maildir or the file's smarthost (a sink the runner
 * starts; mail to other domains is relayed to it), as chasquid's .verify files do; a `logged` step
 * waits for a line in the server's JSON log.
 */
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { ROOT, startPostern, type LogLine, type Postern } from "../e2e/helpers/postern.js";
import { RawSmtp, type SmtpReply } from "../e2e/helpers/raw-smtp.js";
import { startSink, type Sink } from "../delivery/helpers/sink.js";
import { parseDialogFile, type Dialog } from "./format.js";
import { contentMismatch, deliveredMessage } from "./delivered.js";

const DIALOG_DIR = join(ROOT, "test/dialogs");
/** Generous: the machine may be loaded; a passing dialog never waits for it. */
const REPLY_TIMEOUT_MS = 20_000;
/** Fast failure replies and no greet pause unless a file asks for them. */
const BASE_CONFIG = { limits: { authFailureDelayMs: 10, greetPauseMs: 0 } };

type Json = Record<string, unknown>;
function deepMerge(a: Json, b: Json): Json {
  const out: Json = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    const isObj = (x: unknown): x is Json => typeof x === "object" && x !== null && !Array.isArray(x);
    out[k] = isObj(prev) && isObj(v) ? deepMerge(prev, v) : v;
  }
  return out;
}

/** RFC 2034 §4 / RFC 3463: the enhanced code on every line, except where SMTP has none to give. */
function assertEnhanced(r: SmtpReply, first: boolean, where: string): void {
  const lines = r.text.split("\n");
  if (/^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)/.test(lines[0]!)) {
    for (const l of lines) assert.match(l, /^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)/, `${where}: every line needs the enhanced code`);
    assert.equal(lines[0]![4], lines[0]![0], `${where}: enhanced code class differs from the basic code`);
    return;
  }
  const exempt = (first && r.code === 220) || r.code === 334 || r.code === 354 || (r.code === 250 && / Hello /.test(lines[0]!));
  assert.ok(exempt, `${where}: reply without an enhanced status code: ${JSON.stringify(r.text)}`);
}

async function runDialog(server: Postern, sink: Sink, dialog: Dialog, file: string, queuedReplies: string[]): Promise<void> {
  let client: RawSmtp | null = null;
  let last: SmtpReply | null = null;
  let replies = 0;
  /** The queue id of the last "250 ... queued as <id>" in this dialog: what `delivered` looks for. */
  let lastQueued: string | null = null;
  const at = (line: number) => `${file}:${line}`;
  try {
    for (const step of dialog.steps) {
      const where = at(step.line);
      switch (step.kind) {
        case "connect":
          client?.close();
          client = await RawSmtp.open(server.ports[step.listener], { tls: step.listener === "submissions", octets: true });
          replies = 0;
          break;
        case "send":
          client!.write(step.bytes);
          break;
        case "expect": {
          last = await client!.reply(REPLY_TIMEOUT_MS).catch((err: Error) => assert.fail(`${where}: ${err.message}`));
          assertEnhanced(last, replies++ === 0, where);
          const queued = /^250 2\.0\.0 Ok: queued as (\S+)/.exec(last.text);
          if (queued) queuedReplies.push((lastQueued = queued[1]!));
          assert.match(last.text, step.pattern, `${where}: unexpected reply`);
          break;
        }
        case "contains":
          assert.ok(last, `${where}: no reply read yet`);
          if (step.negated) assert.doesNotMatch(last.text, step.pattern, where);
          else assert.match(last.text, step.pattern, where);
          break;
        case "silent": {
          const s = await client!.silent(step.ms);
          assert.ok(s.ok, `${where}: expected silence for ${step.ms} ms, got ${JSON.stringify(s.got)}`);
          break;
        }
        case "closed":
          await client!.waitClosed(REPLY_TIMEOUT_MS, { nothingMore: true }).catch((err: Error) => assert.fail(`${where}: ${err.message}`));
          break;
        case "starttls":
          await client!.upgradeTls();
          replies = 1; // the handshake is no new connection: no greeting follows
          break;
        case "pause":
          await new Promise((r) => setTimeout(r, step.ms)); // part of the script: a client that waits
          break;
        case "close":
          client!.close();
          break;
        case "delivered": {
          assert.ok(lastQueued, `${where}: no message was queued in this dialog yet`);
          const id = lastQueued;
          const rcpt = step.recipient.toLowerCase();
          const loggedDelivered = () =>
            server.waitForLog((l) => l.event === "delivered" && l.id === id && String(l.to).toLowerCase() === rcpt, REPLY_TIMEOUT_MS);
          const message = await deliveredMessage(server.dir, sink, id, step.recipient, loggedDelivered).catch((err: Error) =>
            assert.fail(`${where}: ${err.message}`),
          );
          const wrong = contentMismatch(message, step.content);
          if (wrong) assert.fail(`${where}: ${wrong}`);
          break;
        }
        case "logged": {
          const matches = (l: LogLine) =>
            step.fields.every((f) => ("pattern" in f ? f.pattern.test(String(l[f.field])) : isDeepStrictEqual(l[f.field], f.equals)));
          await server.waitForLog(matches, REPLY_TIMEOUT_MS).catch((err: Error) => assert.fail(`${where}: no such log line: ${err.message}`));
          break;
        }
      }
    }
  } finally {
    client?.close();
  }
}

/**
 * Half-received messages left in the spool (a file in msg/ without its envelope in env/, anything
 * in tmp/), after one more round trip to the server; retried while a delivery removes one.
 */
/** How long a message that looks half-received may take to finish its removal (a loaded machine). */
const LEFTOVER_WAIT_MS = 10_000;

async function spoolLeftovers(server: Postern): Promise<string[]> {
  // A new connection and QUIT: the server has handled the earlier closes by then.
  const c = await RawSmtp.open(server.ports.submission);
  await c.reply(REPLY_TIMEOUT_MS);
  c.write("QUIT\r\n");
  await c.reply(REPLY_TIMEOUT_MS);
  c.close();
  // A delivery still running removes its envelope first, then (after an fsync) its bytes: such a
  // message looks half-received for a moment. A real leftover stays; so look until the spool is
  // clean, and report what is still there after LEFTOVER_WAIT_MS.
  const deadline = Date.now() + LEFTOVER_WAIT_MS;
  for (;;) {
    const queue = join(server.dir, "data/queue");
    const envelopes = new Set(await readdir(join(queue, "env")));
    const orphans = (await readdir(join(queue, "msg"))).filter((id) => !envelopes.has(`${id}.json`)).map((id) => `msg/${id}`);
    const left = [...orphans, ...(await readdir(join(queue, "tmp"))).map((n) => `tmp/${n}`)];
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** DIALOG_FILES=mta.txt,data.txt runs only those files (while writing a dialog). */
const only = process.env.DIALOG_FILES?.split(",").map((f) => f.trim());
const files = readdirSync(DIALOG_DIR)
  .filter((f) => f.endsWith(".txt") && (!only || only.includes(f)))
  .sort();

test("the dialog suite has files to run", () => {
  assert.ok(files.length > 0);
});

// Files run side by side (each has its own server); the dialogs of one file run in order.
describe("dialogs", { concurrency: 3 }, () => {
  for (const file of files) {
    const spec = parseDialogFile(readFileSync(join(DIALOG_DIR, file), "utf8"), file);
    describe(`dialogs/${file}`, () => {
      let server: Postern;
      let sink: Sink;
      const queuedReplies: string[] = [];
      before(async () => {
        sink = await startSink({});
        const base = deepMerge(BASE_CONFIG, { relay: { smarthost: `127.0.0.1:${sink.port}` } });
        const config = spec.config.reduce(deepMerge, base);
        server = await startPostern({ config, users: spec.users });
      });
      after(async () => {
        try {
          assert.deepEqual(await spoolLeftovers(server), [], "half-received messages left in the spool");
          await server.stop(); // every log line written and read
          const queuedLogs = server.logs.filter((l) => l.event === "queued").map((l) => String(l.id));
          assert.deepEqual(queuedLogs.sort(), [...queuedReplies].sort(), "messages queued = messages answered 250 queued");
        } finally {
          await server?.cleanup();
          await sink?.close();
        }
      });
      for (const dialog of spec.dialogs) {
        test(dialog.name, () => runDialog(server, sink, dialog, file, queuedReplies));
      }
    });
  }
});
