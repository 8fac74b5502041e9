/**
 * Streams one message into the spool and commits it (SECURITY rule 16) with a single round of
 * fsyncs between the end of DATA and the 250:
 *   1. open: the data file is created in msg/ under its final name, and msg/ is fsync'd at once
 *      (group-committed, DirSyncer) while the client is still sending — off the critical path
 *   2. write: data appended (write() resolves when the chunk is in the file: back-pressure) and
 *      hashed as it goes
 *   3. commit: the envelope, carrying the message's size and SHA-256, is created in env/; then
 *      fdatasync(data) ‖ fdatasync(envelope) ‖ fsync(env/) run together, and the id is returned
 *      only when all of them, and step 1's fsync of msg/, are done
 * A crash before that leaves an envelope that does not parse or does not match its message;
 * recovery (Spool.init) removes both — such a message was never acknowledged. Any failure removes
 * every file of the message, so a message answered 4xx is never delivered.
 *
 * Creating and closing files and the envelope's one small write are synchronous: they touch only
 * the page cache and cost a few µs, where a trip through libuv's thread pool costs ~35 µs of CPU
 * (measured here, docs/PERFORMANCE.md). Message data, every fsync and unlink (which on ext4 can
 * wait for the journal) stay asynchronous.
 */
import { closeSync, openSync } from "node:fs";
import { unlink } from "node:fs/promises";
import { createHash, type Hash } from "node:crypto";
import { fdatasync, writeFully, writeSmallFile } from "./durable-io.js";
import { newQueueId } from "./queue-id.js";
import type { Envelope, NewEnvelope, SpoolWriter } from "./types.js";

/**
 * What the writer needs of the spool it writes into. spool.ts implements it and imports this
 * file; this file does not import spool.ts, so the two can be read and tested apart.
 */
export interface SpoolFiles {
  readonly fsync: boolean;
  now(): number;
  messagePath(id: string): string;
  envelopePath(id: string): string;
  syncMessageDir(): Promise<void>;
  syncEnvelopeDir(): Promise<void>;
  /** The envelope is in env/ but its commit has not resolved: not yet part of the queue. */
  markCommitting(id: string): void;
  unmarkCommitting(id: string): void;
  /** A committed envelope, kept for its first reader. */
  rememberFresh(env: Envelope): void;
}

/**
 * TEST ONLY (docs/SECURITY.md, rule 16 tests), given as SpoolOptions.fault: { code: "ENOSPC",
 * at: 4096 } makes a write that would take a message file past 4096 octets fail with ENOSPC (any
 * errno name works); { code: "EIO", at: "commit" } makes the data fsync fail. Production never
 * sets it.
 */
export interface SpoolFault {
  code: string;
  at: number | "commit";
}

/** Like Promise.all, but waits for every task to finish first, so cleanup never races one. */
async function allOrFirstError(tasks: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(tasks);
  for (const r of results) if (r.status === "rejected") throw r.reason;
}

type WriterState = "open" | "committing" | "committed" | "failed" | "aborted";

function injectedError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected by a test (SpoolOptions.fault)`), { code });
}

export class SpoolMessageWriter implements SpoolWriter {
  private state: WriterState = "open";
  private writeError: unknown;
  /** Writes run one after another even if a caller does not await each one. */
  private tail: Promise<void> = Promise.resolve();
  private written = 0;
  private readonly hash: Hash = createHash("sha256");
  private envelopeCreated = false;
  private fdOpen = true;

  private constructor(
    private readonly spool: SpoolFiles,
    readonly id: string,
    private readonly fd: number,
    /** The fsync of msg/ that makes the data file's name durable, started when it was created. */
    private readonly nameSynced: Promise<void>,
    private readonly fault: SpoolFault | undefined,
  ) {}

  static async open(spool: SpoolFiles, fault?: SpoolFault): Promise<SpoolMessageWriter> {
    const id = newQueueId(spool.now());
    const fd = openSync(spool.messagePath(id), "wx", 0o600);
    const nameSynced = spool.syncMessageDir();
    nameSynced.catch(() => undefined); // awaited (and reported) by commit()
    return new SpoolMessageWriter(spool, id, fd, nameSynced, fault);
  }

  get bytesWritten(): number {
    return this.written;
  }

  write(chunk: Buffer): Promise<void> {
    if (this.state !== "open") return Promise.reject(new Error(`spool writer is ${this.state}`));
    this.written += chunk.length;
    this.hash.update(chunk);
    const sizeAfter = this.written;
    const next = this.tail.then(async () => {
      if (this.writeError !== undefined) throw this.writeError;
      try {
        if (typeof this.fault?.at === "number" && sizeAfter > this.fault.at) throw injectedError(this.fault.code);
        await writeFully(this.fd, chunk);
      } catch (err) {
        this.writeError ??= err;
        throw err;
      }
    });
    this.tail = next.catch(() => undefined);
    return next;
  }

  async commit(input: NewEnvelope): Promise<string> {
    if (this.state !== "open") throw new Error(`spool writer is ${this.state}`);
    if (input.recipients.length === 0) throw new Error("cannot commit a message without recipients");
    this.state = "committing";
    try {
      const envelope: Envelope = {
        ...input,
        id: this.id,
        receivedAt: new Date(this.spool.now()).toISOString(),
        size: this.written,
        sha256: this.hash.digest("hex"),
        recipients: input.recipients.map((r) => ({ ...r, status: "pending" as const, attempts: 0 })),
      };
      // Not part of the queue until this commit resolves, though its envelope is in env/ already.
      this.spool.markCommitting(this.id);
      const envFd = openSync(this.spool.envelopePath(this.id), "wx", 0o600);
      this.envelopeCreated = true;
      // One round: every fsync the acknowledgement depends on runs at the same time.
      await allOrFirstError([
        this.closeData(),
        writeSmallFile(envFd, JSON.stringify(envelope), this.spool.fsync),
        this.spool.syncEnvelopeDir(),
        this.nameSynced,
      ]);
      this.spool.unmarkCommitting(this.id);
      this.spool.rememberFresh(envelope);
      this.state = "committed";
      return this.id;
    } catch (err) {
      this.state = "failed";
      await this.removeFiles();
      throw err;
    }
  }

  async abort(): Promise<void> {
    // After a successful commit the message is acknowledged and belongs to the queue.
    if (this.state === "committed" || this.state === "aborted") return;
    if (this.state === "committing") throw new Error("abort() during commit()");
    this.state = "aborted";
    await this.removeFiles();
  }

  private async closeData(): Promise<void> {
    await this.tail;
    if (this.writeError !== undefined) throw this.writeError;
    if (this.fault?.at === "commit") throw injectedError(this.fault.code);
    if (this.spool.fsync) await fdatasync(this.fd);
    this.closeFd();
  }

  private closeFd(): void {
    if (!this.fdOpen) return;
    this.fdOpen = false;
    closeSync(this.fd);
  }

  /** Best effort: every file this writer created, envelope first so the queue never sees half. */
  private async removeFiles(): Promise<void> {
    await this.tail;
    const ignore = () => undefined;
    try {
      this.closeFd();
    } catch {
      // already closed by the kernel's view; nothing to do
    }
    if (this.envelopeCreated) {
      await unlink(this.spool.envelopePath(this.id)).catch(ignore);
      await this.spool.syncEnvelopeDir().catch(ignore);
    }
    await unlink(this.spool.messagePath(this.id)).catch(ignore);
    this.spool.unmarkCommitting(this.id);
  }
}
