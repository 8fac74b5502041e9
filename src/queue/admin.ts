/**
 * What the admin can see and do to the queue (Postfix's mailq, postqueue -f, postsuper -d/-h/-H).
 * Reading needs only the queue store (works without a server); changes go through the running
 * QueueRunner, under the message's lease, so they never race a delivery attempt.
 */
import type { Readable } from "node:stream";
import type { QueueRunner } from "./scheduler.js";
import type { QueueStore } from "./store.js";
import type { Envelope } from "./types.js";
import type { Log } from "../base/log.js";
import type { TlsPolicyName } from "../delivery/tls-policy/types.js";

export type QueueStatus = "active" | "held" | "deferred" | "queued";

export interface QueueEntry {
  id: string;
  /** ISO arrival time and age in seconds. */
  receivedAt: string;
  ageSec: number;
  size: number;
  sender: string;
  recipients: { address: string; status: string; attempts: number; nextAttemptAt?: string; lastResult?: string; tlsPolicy?: TlsPolicyName }[];
  status: QueueStatus;
  /** The newest failure text among recipients still pending (or failed). */
  lastError?: string;
  /** Set when this message is a delivery report about another. */
  dsnOf?: string;
}

export class QueueNotFoundError extends Error {
  constructor(id: string) {
    super(`no such message in the queue: ${id}`);
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === "ENOENT";
}

export function statusOf(env: Envelope, active: boolean): QueueStatus {
  if (env.held) return "held";
  if (active) return "active";
  return env.recipients.some((r) => r.status === "pending" && r.attempts > 0) ? "deferred" : "queued";
}

export function entryOf(env: Envelope, now: number, active = false): QueueEntry {
  const open = env.recipients.filter((r) => r.status !== "delivered");
  const withError = open.filter((r) => r.lastResult && r.attempts > 0);
  return {
    id: env.id,
    receivedAt: env.receivedAt,
    ageSec: Math.max(0, Math.round((now - Date.parse(env.receivedAt)) / 1000)),
    size: env.size,
    sender: env.mailFrom,
    recipients: env.recipients.map((r) => ({
      address: r.address,
      status: r.status,
      attempts: r.attempts,
      nextAttemptAt: r.nextAttemptAt,
      lastResult: r.lastResult,
      tlsPolicy: r.tlsPolicy,
    })),
    status: statusOf(env, active),
    lastError: withError.at(-1)?.lastResult,
    dsnOf: env.dsnOf,
  };
}

/** `postern queue show` reads this much of the message at most. */
const HEADER_VIEW_BYTES = 64 * 1024;

/** The first `max` octets of a stream (fewer if it ends first); the stream is then closed. */
async function readStart(stream: Readable, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= max) break;
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks).subarray(0, max);
}

/** Read-only view: safe on a spool another process owns (it only reads committed files). */
export class QueueReader {
  constructor(
    protected readonly spool: QueueStore,
    protected readonly now: () => number = Date.now,
  ) {}

  protected isActive(_id: string): boolean {
    return false;
  }

  async list(): Promise<QueueEntry[]> {
    const entries: QueueEntry[] = [];
    for (const id of await this.spool.list()) {
      try {
        entries.push(entryOf(await this.spool.readEnvelope(id), this.now(), this.isActive(id)));
      } catch (err) {
        if (!isNotFound(err)) throw err; // removed between list and read: delivered meanwhile
      }
    }
    return entries;
  }

  /** The envelope and the message's header section (at most 64 KiB). */
  async show(id: string): Promise<{ entry: QueueEntry; envelope: Envelope; headers: string }> {
    const envelope = await this.read(id);
    let headers = "";
    try {
      const text = (await readStart(this.spool.message(envelope).open(), HEADER_VIEW_BYTES)).toString("utf8");
      const end = text.indexOf("\r\n\r\n");
      headers = end >= 0 ? text.slice(0, end + 2) : text;
    } catch (err) {
      if (!isNotFound(err)) throw err;
      throw new QueueNotFoundError(id);
    }
    return { entry: entryOf(envelope, this.now(), this.isActive(id)), envelope, headers };
  }

  protected async read(id: string): Promise<Envelope> {
    try {
      return await this.spool.readEnvelope(id);
    } catch (err) {
      if (isNotFound(err)) throw new QueueNotFoundError(id);
      throw err;
    }
  }
}

/** The running server's side: every change under the runner's per-message lock. */
export class QueueAdmin extends QueueReader {
  constructor(
    spool: QueueStore,
    private readonly runner: QueueRunner,
    private readonly logger: Pick<Log, "info">,
    now: () => number = Date.now,
  ) {
    super(spool, now);
  }

  protected override isActive(id: string): boolean {
    return this.runner.isActive(id);
  }

  /**
   * Attempts now, ignoring back-off: one message, or all of them. Held messages stay put and are
   * not counted as flushed: they come back in `held`, so the admin is told why they did not move.
   */
  async flush(id?: string): Promise<{ flushed: number; held: string[] }> {
    if (id === undefined) {
      const entries = await this.list();
      const held = entries.filter((e) => e.status === "held").map((e) => e.id);
      const count = entries.length - held.length;
      this.logger.info({ event: "queue-flush", messages: count, held: held.length }, "queue: flush requested");
      await this.runner.flush();
      return { flushed: count, held };
    }
    const env = await this.read(id);
    if (env.held) throw new Error(`message ${id} is on hold; release it first`);
    this.logger.info({ event: "queue-flush", id }, "queue: flush requested");
    await this.runner.flushOne(id);
    return { flushed: 1, held: [] };
  }

  async hold(id: string): Promise<void> {
    await this.runner.exclusive(id, async (lease) => {
      const env = await this.read(id);
      if (env.held) return;
      env.held = true;
      await this.spool.updateEnvelope(env, lease);
    });
    this.logger.info({ event: "queue-hold", id }, "queue: message put on hold");
  }

  async release(id: string): Promise<void> {
    const env = await this.runner.exclusive(id, async (lease) => {
      const e = await this.read(id);
      if (e.held) {
        delete e.held;
        await this.spool.updateEnvelope(e, lease);
      }
      return e;
    });
    this.logger.info({ event: "queue-release", id }, "queue: message released");
    this.runner.reschedule(env);
  }

  /** Removes the message without a bounce (postsuper -d). */
  async delete(id: string): Promise<void> {
    await this.runner.exclusive(id, async (lease) => {
      await this.read(id);
      await this.spool.remove(id, lease);
    });
    this.logger.info({ event: "queue-delete", id }, "queue: message deleted by the admin");
  }

  /** Removes every deferred message (tried at least once, still pending, not held). */
  async deleteDeferred(): Promise<{ deleted: string[] }> {
    const deleted: string[] = [];
    for (const entry of await this.list()) {
      if (entry.status !== "deferred") continue;
      const gone = await this.runner.exclusive(entry.id, async (lease) => {
        let env: Envelope;
        try {
          env = await this.read(entry.id);
        } catch (err) {
          if (err instanceof QueueNotFoundError) return false;
          throw err;
        }
        if (statusOf(env, false) !== "deferred") {
          this.runner.reschedule(env); // changed meanwhile (delivered, held): leave it
          return false;
        }
        await this.spool.remove(entry.id, lease);
        return true;
      });
      if (gone) deleted.push(entry.id);
    }
    this.logger.info({ event: "queue-delete", ids: deleted }, "queue: deferred messages deleted by the admin");
    return { deleted };
  }
}
