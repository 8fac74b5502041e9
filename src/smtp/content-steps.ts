/**
 * Content steps (DESIGN "Rooms for what grows"): code that reads each accepted message once, as it
 * streams to the queue store, and may add header fields computed from it or refuse it, before the
 * durable commit. A DKIM signer is one (it hashes the body and signs some header fields), inbound
 * SPF/DKIM/DMARC results and content checks are others. No step holds the message: it sees the
 * header section (bounded by limits.headerBytes) and then the body chunk by chunk.
 *
 * Where the added fields go: they must be on top of the message, but they are known only after
 * its last byte, when the bytes are already in the store (the message is streamed to disk, never
 * buffered: DESIGN principle 4). Rewriting the file would cost a copy and a second fsync round;
 * reserving room at its start needs the size in advance. So they travel in the envelope
 * (Envelope.headerPrefix), committed in the same fsync round as the rest of it, and the store puts
 * them first whenever the message is read (QueueStore.message): delivery, bounces and
 * `postern queue show` all see them on top. A DKIM-Signature computed this way covers exactly
 * the bytes that follow it, because the stored bytes are never changed.
 *
 * To add a step: implement ContentStep in its own module and return it from the `contentSteps`
 * session port (server.ts builds that list).
 */
import type { Reply } from "./reply.js";
import type { HeaderInfo } from "./headers.js";
import type { NewEnvelope } from "../queue/types.js";

/** What a step is told when the header section is complete. */
export interface ContentContext {
  /** The envelope as it will be committed: sender, recipients, client (IP, HELO, login, TLS). */
  envelope: Readonly<NewEnvelope>;
  /** The client's header fields, as the intake checks read them (none when its content starts with white space). */
  headers: HeaderInfo;
  /** The header section as stored, our trace fields on top, through the empty line that ends it. */
  headerSection: Buffer;
}

/** A refusal: the reply the client gets and the reason for the log. */
export interface ContentRefusal {
  reply: Reply;
  reason: string;
}

export interface ContentStepResult {
  /** Header fields for the top of the message, each without its final CRLF (folded lines allowed). */
  prependHeaders?: string[];
  /** Refuse the message: nothing is queued and the client gets this reply. */
  refuse?: ContentRefusal;
  /** Facts for the message's "queued" log line (e.g. `dkim: [selectors]`). */
  logFields?: Record<string, unknown>;
}

/** One step's work on one message. */
export interface StepRun {
  /** Body bytes, in order, exactly as stored (after the header section's empty line). */
  body(chunk: Buffer): void;
  /** The message is complete and no other check refused it. */
  finish(): Promise<ContentStepResult>;
  /** The message is dropped (refused, reset, connection lost): free what the run holds. */
  abort?(): void;
}

export interface ContentStep {
  readonly name: string;
  /** Starts work on one message; null when the step has nothing to do for it. */
  begin(ctx: ContentContext): StepRun | null;
}

export type ContentOutcome =
  | {
      ok: true /** Envelope.headerPrefix: every added field with its CRLF; undefined when none. */;
      headerPrefix?: string;
      /** Every step's logFields, merged. */
      logFields?: Record<string, unknown>;
    }
  | { ok: false; refusal: ContentRefusal }
  | { ok: false; error: unknown; step: string };

/** A field line: a name, a colon, and line breaks only as folding (CRLF then white space). */
const FIELD = /^[\x21-\x39\x3b-\x7e]+:(?:[^\r\n]|\r\n[ \t])*$/;

const CRLFCRLF = Buffer.from("\r\n\r\n");
const CRLF = CRLFCRLF.subarray(0, 2);

/**
 * Runs the steps side by side over one message's stored bytes. It finds where the header section
 * ends by itself (the first empty line, as every next hop reads the stored message), holding at
 * most `maxHeldBytes` while it looks. Steps see the same bytes and not each other's fields; their
 * fields stack in step order, the last step's on top, so a signer listed last heads the message.
 */
export class ContentPipeline {
  private runs: { name: string; run: StepRun }[] = [];
  private held: Buffer[] = [];
  private heldLength = 0;
  private started = false;
  private failure?: { error: unknown; step: string };
  private done = false;

  constructor(
    private readonly steps: readonly ContentStep[],
    /** The context at the end of the header section (envelope and the fields the checks read). */
    private readonly describe: () => Omit<ContentContext, "headerSection">,
    private readonly maxHeldBytes: number,
  ) {}

  /** Every stored byte, in order. */
  push(bytes: Buffer): void {
    if (this.steps.length === 0 || this.done || bytes.length === 0) return;
    if (this.started) {
      this.feed(bytes);
      return;
    }
    // Only the new bytes (and the 3 before them, for a CRLFCRLF split across pushes) are searched,
    // and the held bytes are joined once, when the header section ends: a header section arriving
    // line by line costs linear time, not quadratic.
    const before = this.heldLength;
    const tail = this.tailOfHeld(3);
    this.held.push(bytes);
    this.heldLength += bytes.length;
    const window = Buffer.concat([tail, bytes]);
    let end = -1;
    if (before < 2 && this.heldLength >= 2 && this.firstBytes(2).equals(CRLF))
      end = 2; // no header fields at all
    else {
      const at = window.indexOf(CRLFCRLF);
      if (at >= 0) end = before - tail.length + at + 4;
      else if (this.heldLength > this.maxHeldBytes) end = this.heldLength;
    }
    if (end < 0) return;
    const all = Buffer.concat(this.held);
    this.start(all.subarray(0, end));
    if (end < all.length) this.feed(all.subarray(end));
  }

  /** After the last byte: each step's verdict, in order; the first refusal or failure wins. */
  async finish(): Promise<ContentOutcome> {
    if (this.steps.length === 0 || this.done) return { ok: true };
    if (!this.started) this.start(Buffer.concat(this.held)); // all header, or empty
    this.done = true;
    const fields: string[][] = [];
    let logFields: Record<string, unknown> | undefined;
    for (const { name, run } of this.runs) {
      if (this.failure) break;
      try {
        const result = await run.finish();
        if (result.refuse) {
          this.abortRuns();
          return { ok: false, refusal: result.refuse };
        }
        const lines = result.prependHeaders ?? [];
        const bad = lines.find((l) => !FIELD.test(l));
        if (bad !== undefined) throw new Error(`not a header field: ${JSON.stringify(bad.slice(0, 80))}`);
        fields.push(lines);
        if (result.logFields) logFields = { ...logFields, ...result.logFields };
      } catch (error) {
        this.failure = { error, step: name };
      }
    }
    if (this.failure) {
      this.abortRuns();
      return { ok: false, ...this.failure };
    }
    const top = fields.reverse().flat();
    return { ok: true, headerPrefix: top.length > 0 ? top.map((l) => l + "\r\n").join("") : undefined, ...(logFields && { logFields }) };
  }

  /** The message is dropped: every run is told once. */
  abort(): void {
    if (this.done) return;
    this.done = true;
    this.abortRuns();
  }

  /** The last n held bytes (fewer when less is held). */
  private tailOfHeld(n: number): Buffer {
    const parts: Buffer[] = [];
    let need = n;
    for (let i = this.held.length - 1; i >= 0 && need > 0; i--) {
      const b = this.held[i]!;
      parts.unshift(b.subarray(Math.max(0, b.length - need)));
      need -= Math.min(need, b.length);
    }
    return Buffer.concat(parts);
  }

  /** The first n held bytes (fewer when less is held). */
  private firstBytes(n: number): Buffer {
    return Buffer.concat(this.held).subarray(0, n);
  }

  private start(headerSection: Buffer): void {
    this.started = true;
    this.held = [];
    const base = this.describe();
    for (const step of this.steps) {
      try {
        const run = step.begin({ ...base, headerSection });
        if (run) this.runs.push({ name: step.name, run });
      } catch (error) {
        this.failure ??= { error, step: step.name };
      }
    }
  }

  private feed(chunk: Buffer): void {
    if (this.failure) return;
    for (const { name, run } of this.runs) {
      try {
        run.body(chunk);
      } catch (error) {
        this.failure = { error, step: name };
        return;
      }
    }
  }

  private abortRuns(): void {
    for (const { run } of this.runs) {
      try {
        run.abort?.();
      } catch {
        // a step's cleanup failing changes nothing for the message
      }
    }
    this.runs = [];
  }
}
