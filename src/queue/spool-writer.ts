/**
 * Streams one message into the spool and commits it (SECURITY rule 16):
 *   1. data streamed into tmp/<id>.msg. write() resolves only when the chunk is in the file, so a
 *      fast client waits for a slow disk (back-pressure) and memory stays flat
 *   2. fdatasync the data while the envelope is written to tmp/<id>.json (JSON.stringify) and
 *      fdatasync'd — both must finish before any rename
 *   3. rename data into msg/, rename envelope into env/ — the envelope rename is the commit point
 *   4. fsync msg/ and env/ (shared with concurrent commits) — only then resolve with the id
 * Any failure removes every file of the message, so a message answered 4xx is never delivered.
 */
import { open, rename, unlink, type FileHandle } from "node:fs/promises";
import { newQueueId } from "./queue-id.js";
import type { Spool } from "./spool.js";
import type { Envelope, NewEnvelope, SpoolWriter } from "./types.js";

/** Like Promise.all, but waits for every task to finish first, so cleanup never races one. */
async function allOrFirstError(tasks: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(tasks);
  for (const r of results) if (r.status === "rejected") throw r.reason;
}

type WriterState = "open" | "committing" | "committed" | "failed" | "aborted";

/**
 * TEST ONLY (docs/SECURITY.md, rule 16 tests): POSTERN_TEST_SPOOL_FAULT="ENOSPC@4096" makes a write
 * that would take a message file past 4096 octets fail with ENOSPC (any errno name works);
 * "EIO@commit" makes the data fsync fail. Unset in production; read nowhere else.
 */
const injectedFault = ((spec) => {
  const m = /^([A-Z]+)@(\d+|commit)$/.exec(spec ?? "");
  return m ? { code: m[1]!, at: m[2] === "commit" ? ("commit" as const) : Number(m[2]) } : null;
})(process.env.POSTERN_TEST_SPOOL_FAULT);

function injectedError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected by POSTERN_TEST_SPOOL_FAULT`), { code });
}

export class SpoolMessageWriter implements SpoolWriter {
  private state: WriterState = "open";
  private writeError: unknown;
  /** Writes run one after another even if a caller does not await each one. */
  private tail: Promise<void> = Promise.resolve();
  private written = 0;
  private renamedMessage = false;
  private renamedEnvelope = false;
  private readonly dataTmp: string;
  private readonly envTmp: string;

  private constructor(
    private readonly spool: Spool,
    readonly id: string,
    private readonly handle: FileHandle,
  ) {
    this.dataTmp = spool.tmpPath(`${id}.msg`);
    this.envTmp = spool.tmpPath(`${id}.json`);
  }

  static async open(spool: Spool): Promise<SpoolMessageWriter> {
    const id = newQueueId(spool.now());
    const handle = await open(spool.tmpPath(`${id}.msg`), "wx", 0o600);
    return new SpoolMessageWriter(spool, id, handle);
  }

  get bytesWritten(): number {
    return this.written;
  }

  write(chunk: Buffer): Promise<void> {
    if (this.state !== "open") return Promise.reject(new Error(`spool writer is ${this.state}`));
    this.written += chunk.length;
    const sizeAfter = this.written;
    const next = this.tail.then(async () => {
      if (this.writeError !== undefined) throw this.writeError;
      let offset = 0;
      try {
        if (typeof injectedFault?.at === "number" && sizeAfter > injectedFault.at) throw injectedError(injectedFault.code);
        while (offset < chunk.length) {
          const { bytesWritten } = await this.handle.write(chunk, offset, chunk.length - offset);
          offset += bytesWritten;
        }
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
        recipients: input.recipients.map((r) => ({ ...r, status: "pending" as const, attempts: 0 })),
      };
      // Both files are still in tmp/, so their fsyncs may overlap (one disk flush less per commit).
      await allOrFirstError([this.closeData(), this.spool.writeFileDurable(this.envTmp, JSON.stringify(envelope))]);

      this.spool.markCommitting(this.id);
      await rename(this.dataTmp, this.spool.messagePath(this.id));
      this.renamedMessage = true;
      await rename(this.envTmp, this.spool.envelopePath(this.id));
      this.renamedEnvelope = true;
      await allOrFirstError([this.spool.syncMessageDir(), this.spool.syncEnvelopeDir()]);

      this.spool.unmarkCommitting(this.id);
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
    if (injectedFault?.at === "commit") throw injectedError(injectedFault.code);
    if (this.spool.fsync) await this.handle.datasync();
    await this.handle.close();
  }

  /** Best effort: every file this writer created, envelope first so the queue never sees half. */
  private async removeFiles(): Promise<void> {
    await this.tail;
    await this.handle.close().catch(() => undefined);
    const ignore = () => undefined;
    if (this.renamedEnvelope) {
      await unlink(this.spool.envelopePath(this.id)).catch(ignore);
      await this.spool.syncEnvelopeDir().catch(ignore);
    }
    if (this.renamedMessage) await unlink(this.spool.messagePath(this.id)).catch(ignore);
    await unlink(this.envTmp).catch(ignore);
    await unlink(this.dataTmp).catch(ignore);
    this.spool.unmarkCommitting(this.id);
  }
}
