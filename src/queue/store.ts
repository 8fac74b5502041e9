/**
 * The queue store: where accepted mail lives until it is delivered (DESIGN "Queue store"). The
 * runner, the deliverers, the bounce generator and the admin commands reach queued mail only
 * through this interface, never through a path, so a second implementation (PostgreSQL, for
 * several nodes on one database) can replace the file spool (spool.ts) without touching them.
 *
 * What each operation means for an implementation:
 *   openWriter       enqueue: stream a new message in; its writer's commit() is the durable commit
 *                    (the 250 waits for it: SECURITY rule 16; on PostgreSQL, after COMMIT)
 *   list, readEnvelope, has
 *                    the committed messages, for the runner at start and for `postern queue list/show`
 *   claim            the per-message lock, as a lease with an expiry: only its holder attempts,
 *                    holds, releases or deletes the message; a lease whose holder died expires, so a
 *                    node that crashed mid-attempt does not keep a message from the others forever
 *   message          the message's bytes as a stream (DESIGN principle 4), opened once per reader
 *   updateEnvelope   per-recipient state after an attempt, the next attempt times (reschedule),
 *                    hold/release, notices sent; durable when it resolves (SECURITY rule 18)
 *   remove           the message leaves the queue, durably
 * A change made under a lease names it: a store shared between nodes refuses one whose lease was
 * lost (expired and claimed by another), so two nodes never both record an attempt.
 */
import type { Envelope, MessageSource, SpoolWriter } from "./types.js";

export type { MessageSource };

/** The right to change one message until `expiresAt` (ms since epoch). */
export interface QueueLease {
  readonly id: string;
  readonly expiresAt: number;
  /** Gives the message back; safe to call twice. */
  release(): Promise<void>;
}

/** The lease is gone (released, or expired and claimed by another holder). */
export class LeaseLostError extends Error {
  constructor(id: string) {
    super(`lease on queued message ${id} is no longer held`);
  }
}

export interface QueueStore {
  /** Starts a new message. Nothing is visible to list() until the writer's commit() resolves. */
  openWriter(): Promise<SpoolWriter>;
  /** Ids of committed messages, oldest first. */
  list(): Promise<string[]>;
  /** Rejects with an error whose `code` is "ENOENT" when no such message is queued. */
  readEnvelope(id: string): Promise<Envelope>;
  /** Whether a committed message with this id is queued. */
  has(id: string): Promise<boolean>;
  /** The lease on a message for `ttlMs`, or null while another holder's lease has not expired. */
  claim(id: string, ttlMs: number): Promise<QueueLease | null>;
  /** The message's bytes; `env` is its envelope as read from this store. */
  message(env: Envelope): MessageSource;
  /** Durably replaces the envelope (every field may change except id, size and sha256). */
  updateEnvelope(env: Envelope, lease?: QueueLease): Promise<void>;
  /** Durably removes the message and its envelope. */
  remove(id: string, lease?: QueueLease): Promise<void>;
}

/**
 * A store several nodes share (PostgreSQL, src/store/pg/queue.ts): messages appear in it that
 * this node did not enqueue, and leases of a dead node lapse, so its runner also polls for work.
 */
export interface SharedQueueStore extends QueueStore {
  readonly shared: true;
  /**
   * As QueueStore's, or under a given id that is not queued: a second commit under the same id
   * fails (the bounce generator's reports, src/queue/bounce.ts, so one report per message).
   */
  openWriter(id?: string): Promise<SpoolWriter>;
  /** Claims up to `limit` due messages that are neither held nor leased (or whose lease lapsed). */
  claimDue(limit: number, ttlMs: number): Promise<QueueLease[]>;
}

export function isSharedQueueStore(store: QueueStore): store is SharedQueueStore {
  return (store as Partial<SharedQueueStore>).shared === true && typeof (store as Partial<SharedQueueStore>).claimDue === "function";
}
