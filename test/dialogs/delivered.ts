/**
 * The dialog runner's `delivered` step (chasquid's .verify files in our own words): find the
 * message a dialog had queued where it was delivered (a Maildir of the server, or the smarthost
 * sink the runner starts), and compare it with what the dialog says it must hold.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Sink } from "../delivery/helpers/sink.js";
import type { DeliveredContent } from "./format.js";

/**
 * Trace fields Postern puts on top of a message: Received: (RFC 5321 §4.4), Return-Path: and
 * Delivered-To: at final delivery, Date: and Message-ID: on submission (RFC 6409 §8), and
 * Authentication-Results: on mail from unauthenticated clients (RFC 8601, src/inbound).
 */
const TRACE_FIELDS = /^(?:(?:Received|Return-Path|Delivered-To|Date|Message-ID|Authentication-Results):[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)*$/i;

/**
 * Why the delivered bytes do not hold what `want` says, or null when they do. With `want.message`
 * they must be trace fields and then exactly those bytes: nothing else added, nothing changed.
 */
export function contentMismatch(delivered: Buffer, want: DeliveredContent): string | null {
  const text = delivered.toString("latin1");
  const shown = `delivered: ${JSON.stringify(text)}`;
  if (want.message) {
    const tail = want.message.toString("latin1");
    if (!text.endsWith(tail)) return `the delivered message does not end with the expected bytes ${JSON.stringify(tail)}\n${shown}`;
    const added = text.slice(0, text.length - tail.length);
    if (!TRACE_FIELDS.test(added)) return `before the expected bytes stands more than our trace fields: ${JSON.stringify(added)}\n${shown}`;
  }
  for (const { pattern, negated } of want.patterns) {
    if (pattern.test(text) === negated) return `the delivered message ${negated ? "matches" : "does not match"} ${pattern}\n${shown}`;
  }
  return null;
}

/**
 * The message with this queue id as it reached `recipient`: a Maildir file below `<dir>/mail`
 * (found by its Delivered-To: and the id in our Received:), or what the smarthost sink received.
 * `delivered` resolves once the server has logged the recipient's delivery (the queue delivers in
 * the background): the message is then on disk or in the sink, so it is looked up once.
 */
export async function deliveredMessage(dir: string, sink: Sink, id: string, recipient: string, delivered: () => Promise<unknown>): Promise<Buffer> {
  const rcpt = recipient.toLowerCase();
  const ours = new RegExp(` id ${id.replace(/\W/g, "\\$&")}[;\\r]`);
  await delivered();
  for (const file of await maildirFiles(join(dir, "mail"))) {
    const bytes = await readFile(file);
    const text = bytes.toString("latin1");
    const to = /^Delivered-To: (.*)\r\n/im.exec(text)?.[1]?.toLowerCase();
    if (to === rcpt && ours.test(text)) return bytes;
  }
  const relayed = sink.messages.find((m) => m.to.some((t) => t.toLowerCase() === rcpt) && ours.test(m.data.toString("latin1")));
  if (relayed) return relayed.data;
  throw new Error(`message ${id} was logged delivered to ${recipient}, but is in no Maildir and not at the smarthost`);
}

/** Every file in a new/ folder of a Maildir below root. */
async function maildirFiles(root: string): Promise<string[]> {
  try {
    const entries = await readdir(root, { withFileTypes: true, recursive: true });
    return entries.filter((e) => e.isFile() && e.parentPath.endsWith("/new")).map((e) => join(e.parentPath, e.name));
  } catch {
    return []; // nothing delivered yet
  }
}
