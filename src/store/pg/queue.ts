/**
 * The queue on PostgreSQL (`store.backend: postgres`): the QueueStore (src/queue/store.ts) shared
 * by every node of a cluster, so any node delivers any message and a dead node's work is taken over.
 *
 *   queue_messages  one row per message: the envelope (jsonb) and what runners select on (due time,
 *                   held, lease); migrations-queue.ts
 *   queue_chunks    the message's bytes in CHUNK_BYTES pieces (id, seq), written in the same
 *                   transaction as the row: the nodes share nothing but the database, and one
 *                   COMMIT makes bytes and envelope durable together (docs: measured in the report)
 *
 * Durability (SECURITY rule 16): a writer's commit() resolves after COMMIT returned, with
 * synchronous_commit on (init() refuses to run with it off), so the 250 follows the WAL flush.
 * A message that fits one chunk is committed by one statement; a larger one opens a transaction on
 * its own connection when its first chunk fills and inserts chunk after chunk, so memory stays at
 * one chunk per message. A crash before COMMIT leaves nothing: the transaction never happened.
 *
 * Leases: a claim writes a fresh token, the node's name and an expiry (the database's clock) into
 * the row; every change under a lease names the token and fails with LeaseLostError once another
 * node has claimed the message. Held leases are renewed every renewEveryMs, so an attempt may take
 * as long as it needs, while a dead node's leases lapse within one lease length and its messages
 * are claimed by the others (claimDue, FOR UPDATE SKIP LOCKED).
 */
import { createHash, randomUUID, type Hash } from "node:crypto";
import { Readable } from "node:stream";
import type pg from "pg";
import { newQueueId } from "../../queue/queue-id.js";
import { LeaseLostError, type QueueLease, type SharedQueueStore } from "../../queue/store.js";
import type { Envelope, MessageSource, NewEnvelope, SpoolWriter } from "../../queue/types.js";
import type { Log } from "../../base/log.js";
import { PG_UNIQUE_VIOLATION, pgErrorCode, statement, type PgPool } from "./pool.js";

/** Bytes per stored chunk: a message up to this size is one row and one statement. */
export const CHUNK_BYTES = 256 * 1024;
/** Chunks fetched per query when reading a message (memory per reader: this × CHUNK_BYTES). */
const CHUNKS_PER_READ = 2;

const COLUMNS = "id, envelope, size, sha256, received_at, next_attempt_at, held, attempts";
const VALUES = "$1, $2, $3, $4, $5, COALESCE($6::timestamptz, now()), $7, 0";

const sql = {
  insertSmall: statement(
    "queue_insert_small",
    `WITH m AS (INSERT INTO queue_messages (${COLUMNS}) VALUES (${VALUES}) RETURNING id)
     INSERT INTO queue_chunks (id, seq, data) SELECT id, 0, $8 FROM m`,
  ),
  insertMessage: statement("queue_insert_message", `INSERT INTO queue_messages (${COLUMNS}) VALUES (${VALUES})`),
  insertChunk: statement("queue_insert_chunk", "INSERT INTO queue_chunks (id, seq, data) VALUES ($1, $2, $3)"),
  list: statement("queue_list", "SELECT id FROM queue_messages ORDER BY id"),
  read: statement("queue_read", "SELECT envelope FROM queue_messages WHERE id = $1"),
  has: statement("queue_has", "SELECT 1 FROM queue_messages WHERE id = $1"),
  readChunks: statement("queue_read_chunks", "SELECT seq, data FROM queue_chunks WHERE id = $1 AND seq >= $2 ORDER BY seq LIMIT $3"),
  claim: statement(
    "queue_claim",
    `UPDATE queue_messages SET lease_owner = $2, lease_token = $3, lease_expires_at = now() + $4 * interval '1 millisecond', claims = claims + 1
     WHERE id = $1 AND (lease_token IS NULL OR lease_expires_at < now())
     RETURNING lease_expires_at, envelope`,
  ),
  claimDue: statement(
    "queue_claim_due",
    `WITH due AS (
       SELECT id FROM queue_messages
       WHERE next_attempt_at <= now() AND NOT held AND (lease_token IS NULL OR lease_expires_at < now())
       ORDER BY next_attempt_at LIMIT $1
       FOR UPDATE SKIP LOCKED)
     UPDATE queue_messages m SET lease_owner = $2, lease_token = gen_random_uuid(),
       lease_expires_at = now() + $3 * interval '1 millisecond', claims = m.claims + 1
     FROM due WHERE m.id = due.id
     RETURNING m.id, m.lease_token, m.lease_expires_at, m.envelope`,
  ),
  renew: statement(
    "queue_renew",
    `UPDATE queue_messages SET lease_expires_at = now() + $2 * interval '1 millisecond'
     WHERE lease_token = ANY($1::uuid[]) RETURNING lease_token`,
  ),
  owner: statement("queue_lease_owner", "SELECT lease_owner FROM queue_messages WHERE id = $1 AND lease_token IS NOT NULL"),
  release: statement(
    "queue_release",
    "UPDATE queue_messages SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_token = $2",
  ),
  update: statement(
    "queue_update",
    `UPDATE queue_messages SET envelope = $2, next_attempt_at = COALESCE($3::timestamptz, now()), held = $4, attempts = $5, updated_at = now()
     WHERE id = $1 AND ($6::uuid IS NULL OR lease_token = $6)`,
  ),
  remove: statement("queue_remove", "DELETE FROM queue_messages WHERE id = $1 AND ($2::uuid IS NULL OR lease_token = $2)"),
};

export interface PgQueueStoreOptions {
  /** Names this node as a lease holder (store.nodeName). */
  nodeName: string;
  /** How often held leases are extended (ms); a third of the lease length is usual. */
  renewEveryMs?: number;
  logger?: Log;
  now?: () => number;
}

function notFound(id: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`no queued message ${id}`), { code: "ENOENT" });
}

/** Earliest time a pending recipient is due (ISO), or null: due now (none pending, or never tried). */
export function nextDueOf(env: Envelope): string | null {
  let next: number | undefined;
  for (const r of env.recipients) {
    if (r.status !== "pending") continue;
    if (!r.nextAttemptAt) return null;
    const t = Date.parse(r.nextAttemptAt);
    if (next === undefined || t < next) next = t;
  }
  return next === undefined ? null : new Date(next).toISOString();
}

function attemptsOf(env: Envelope): number {
  return env.recipients.reduce((n, r) => n + r.attempts, 0);
}

/** The row's columns after the envelope, in statement order ($2..$7). */
function rowValues(env: Envelope): unknown[] {
  return [JSON.stringify(env), env.size, env.sha256 ?? "", env.receivedAt, nextDueOf(env), env.held === true];
}

class PgLease implements QueueLease {
  lost = false;
  constructor(
    private readonly store: PgQueueStore,
    readonly id: string,
    readonly token: string,
    public expiresAt: number,
    readonly ttlMs: number,
  ) {}

  release(): Promise<void> {
    return this.store.releaseLease(this);
  }
}

/** A claim on a message that is not (or no longer) queued: reads find nothing, changes fail. */
const GONE_TOKEN = "00000000-0000-0000-0000-000000000000";

export class PgQueueStore implements SharedQueueStore {
  readonly shared = true as const;
  private readonly nodeName: string;
  private readonly logger?: Log;
  private readonly now: () => number;
  private readonly held = new Map<string, PgLease>();
  /** Envelopes as claimed, by id, until their holder reads them or lets go. */
  private readonly fresh = new Map<string, Envelope>();
  private readonly renewEveryMs: number;
  private renewTimer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;

  constructor(
    readonly db: PgPool,
    opts: PgQueueStoreOptions,
  ) {
    this.nodeName = opts.nodeName;
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
    this.renewEveryMs = opts.renewEveryMs ?? 10_000;
  }

  /** Checks the database acknowledges only what is durable (PgPool pins it per session; a pooler in between could undo that), and starts renewing leases. */
  async init(): Promise<void> {
    const mode = (await this.db.pool.query<{ synchronous_commit: string }>("SHOW synchronous_commit")).rows[0]?.synchronous_commit;
    if (mode === "off") {
      throw new Error(
        "PostgreSQL runs with synchronous_commit = off: a 250 could precede the WAL flush; set it to on (or remote_apply with a synchronous standby)",
      );
    }
    this.renewTimer = setInterval(() => void this.renewAll(), this.renewEveryMs);
    this.renewTimer.unref();
  }

  /** Stops renewing and gives back every lease still held (the pool is the caller's to end). */
  async close(): Promise<void> {
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = undefined;
    await this.renewing;
    await Promise.allSettled([...this.held.values()].map((l) => l.release()));
  }

  openWriter(id?: string): Promise<SpoolWriter> {
    return Promise.resolve(new PgMessageWriter(this.db, id ?? newQueueId(this.now()), this.now));
  }

  async list(): Promise<string[]> {
    return (await this.db.run<{ id: string }>(sql.list)).rows.map((r) => r.id);
  }

  async readEnvelope(id: string): Promise<Envelope> {
    const fresh = this.fresh.get(id);
    if (fresh) {
      this.fresh.delete(id);
      return fresh;
    }
    const row = (await this.db.run<{ envelope: Envelope }>(sql.read, [id])).rows[0];
    if (!row) throw notFound(id);
    return row.envelope;
  }

  async has(id: string): Promise<boolean> {
    return (await this.db.run(sql.has, [id])).rowCount === 1;
  }

  async claim(id: string, ttlMs: number): Promise<QueueLease | null> {
    const token = randomUUID();
    const row = (await this.db.run<{ lease_expires_at: Date; envelope: Envelope }>(sql.claim, [id, this.nodeName, token, ttlMs])).rows[0];
    if (row) return this.track(new PgLease(this, id, token, row.lease_expires_at.getTime(), ttlMs), row.envelope);
    // Not queued at all: a lease on nothing, so the caller reads ENOENT as with the file spool.
    if (!(await this.has(id))) return new PgLease(this, id, GONE_TOKEN, this.now() + ttlMs, ttlMs);
    return null;
  }

  /** Up to `limit` due messages, not held, whose lease is free or lapsed, claimed in one statement. */
  async claimDue(limit: number, ttlMs: number): Promise<QueueLease[]> {
    if (limit <= 0) return [];
    const rows = (
      await this.db.run<{ id: string; lease_token: string; lease_expires_at: Date; envelope: Envelope }>(sql.claimDue, [limit, this.nodeName, ttlMs])
    ).rows;
    return rows.map((r) => this.track(new PgLease(this, r.id, r.lease_token, r.lease_expires_at.getTime(), ttlMs), r.envelope));
  }

  /**
   * Copies a message from elsewhere (the file spool) under its own id and envelope; false when
   * that id is queued already, so a second import of the same spool changes nothing.
   */
  async importMessage(env: Envelope, bytes: AsyncIterable<Buffer>): Promise<boolean> {
    if (await this.has(env.id)) return false;
    const writer = new PgMessageWriter(this.db, env.id, this.now);
    try {
      for await (const chunk of bytes) await writer.write(chunk);
      await writer.commitEnvelope(env);
      return true;
    } catch (err) {
      await writer.abort().catch(() => undefined);
      if (pgErrorCode(err) === PG_UNIQUE_VIOLATION) return false; // imported meanwhile by another run
      throw err;
    }
  }

  message(env: Envelope): MessageSource {
    const prefix = env.headerPrefix ? Buffer.from(env.headerPrefix, "utf8") : undefined;
    const db = this.db;
    return {
      size: (prefix?.length ?? 0) + env.size,
      open: () => Readable.from(readChunks(db, env, prefix), { objectMode: false }),
    };
  }

  async updateEnvelope(env: Envelope, lease?: QueueLease): Promise<void> {
    const token = this.tokenOf(env.id, lease);
    this.fresh.delete(env.id);
    const done = await this.db.run(sql.update, [env.id, JSON.stringify(env), nextDueOf(env), env.held === true, attemptsOf(env), token]);
    if (done.rowCount === 1) return;
    if (token !== null && (await this.has(env.id))) throw this.lost(lease as PgLease);
    throw notFound(env.id); // never resurrect a removed message
  }

  async remove(id: string, lease?: QueueLease): Promise<void> {
    const token = this.tokenOf(id, lease);
    this.fresh.delete(id);
    const done = await this.db.run(sql.remove, [id, token]);
    if (done.rowCount === 0 && token !== null && (await this.has(id))) throw this.lost(lease as PgLease);
    // The row and its lease are gone together: release() has nothing left to do.
    if (lease instanceof PgLease) this.forget(lease);
  }

  // ---- leases ----

  async releaseLease(lease: PgLease): Promise<void> {
    if (this.held.get(lease.token) !== lease) return;
    this.forget(lease);
    if (lease.lost) return;
    await this.db.run(sql.release, [lease.id, lease.token]);
  }

  /** `envelope`: the row as claimed, kept for the holder's first readEnvelope (one round trip less). */
  private track(lease: PgLease, envelope?: Envelope): PgLease {
    this.held.set(lease.token, lease);
    if (envelope) this.fresh.set(lease.id, envelope);
    return lease;
  }

  private forget(lease: PgLease): void {
    if (this.held.get(lease.token) === lease) this.held.delete(lease.token);
    this.fresh.delete(lease.id);
  }

  private tokenOf(id: string, lease: QueueLease | undefined): string | null {
    if (lease === undefined) return null;
    if (!(lease instanceof PgLease) || lease.id !== id) throw new LeaseLostError(id);
    if (lease.lost) throw new LeaseLostError(id);
    return lease.token;
  }

  private lost(lease: PgLease): LeaseLostError {
    lease.lost = true;
    this.forget(lease);
    return new LeaseLostError(lease.id);
  }

  /** Extends every lease held here; one that is no longer ours is marked lost. */
  private renewAll(): void {
    if (this.renewing || this.held.size === 0) return;
    this.renewing = (async () => {
      const byTtl = new Map<number, PgLease[]>();
      for (const l of this.held.values()) byTtl.set(l.ttlMs, [...(byTtl.get(l.ttlMs) ?? []), l]);
      for (const [ttl, leases] of byTtl) {
        const rows = (await this.db.run<{ lease_token: string }>(sql.renew, [leases.map((l) => l.token), ttl])).rows;
        const kept = new Set(rows.map((r) => r.lease_token));
        for (const l of leases) {
          if (kept.has(l.token)) {
            l.expiresAt = this.now() + ttl;
          } else if (this.held.get(l.token) === l) {
            this.lost(l);
            // Not renewed: removed or released meanwhile by its holder here (a race with this
            // renewal, harmless), or really claimed by another node after it lapsed.
            const owner = (await this.db.run<{ lease_owner: string | null }>(sql.owner, [l.id])).rows[0]?.lease_owner;
            if (owner) this.logger?.warn({ event: "lease-lost", id: l.id, owner }, "queue: lease on a message lapsed and was taken over");
          }
        }
      }
    })()
      .catch((err: unknown) => {
        this.logger?.error({ event: "lease-renew-error", err: String(err) }, "queue: could not renew leases");
      })
      .finally(() => {
        this.renewing = undefined;
      });
  }
}

/** A message's chunks in order, a few at a time; the prefix first, once the message is known to exist. */
async function* readChunks(db: PgPool, env: Envelope, prefix: Buffer | undefined): AsyncGenerator<Buffer> {
  let seq = 0;
  let read = 0;
  for (;;) {
    const rows = (await db.run<{ seq: number; data: Buffer }>(sql.readChunks, [env.id, seq, CHUNKS_PER_READ])).rows;
    if (seq === 0) {
      if (rows.length === 0) throw notFound(env.id); // every stored message has chunk 0
      if (prefix) yield prefix;
    }
    for (const row of rows) {
      if (row.seq !== seq) throw new Error(`queued message ${env.id}: chunk ${seq} missing`);
      seq++;
      read += row.data.length;
      if (row.data.length > 0) yield row.data;
    }
    if (rows.length < CHUNKS_PER_READ) break;
  }
  if (read !== env.size) throw new Error(`queued message ${env.id}: ${read} octets stored, envelope says ${env.size}`);
}

const ignoreError = () => undefined;

type WriterState = "open" | "committing" | "committed" | "failed" | "aborted";

/**
 * Streams one message into PostgreSQL. Bytes gather in memory up to CHUNK_BYTES; a full chunk is
 * inserted in the message's transaction (begun with the first one, on a connection of its own),
 * and write() resolves when it is in: back-pressure. commit() inserts the rest and the row, then
 * COMMIT; only then is the id returned (and the 250 sent).
 */
export class PgMessageWriter implements SpoolWriter {
  private state: WriterState = "open";
  private parts: Buffer[] = [];
  private buffered = 0;
  private written = 0;
  private seq = 0;
  private readonly hash: Hash = createHash("sha256");
  private client: pg.PoolClient | undefined;
  private tail: Promise<void> = Promise.resolve();
  private writeError: unknown;

  constructor(
    private readonly db: PgPool,
    readonly id: string,
    private readonly now: () => number,
  ) {}

  get bytesWritten(): number {
    return this.written;
  }

  write(chunk: Buffer): Promise<void> {
    if (this.state !== "open") return Promise.reject(new Error(`queue writer is ${this.state}`));
    this.written += chunk.length;
    this.hash.update(chunk);
    this.parts.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered < CHUNK_BYTES) return this.writeError === undefined ? Promise.resolve() : Promise.reject(this.writeError);
    const full = this.takeBuffered();
    const next = this.tail.then(async () => {
      if (this.writeError !== undefined) throw this.writeError;
      try {
        if (!this.client) {
          this.client = await this.db.pool.connect();
          // A lost connection is reported by the query in flight; without a listener its
          // 'error' event would end the process.
          this.client.on("error", ignoreError);
          await this.client.query("BEGIN");
        }
        await this.client.query({ name: sql.insertChunk.name, text: sql.insertChunk.text, values: [this.id, this.seq++, full] });
      } catch (err) {
        this.writeError ??= err;
        throw err;
      }
    });
    this.tail = next.catch(() => undefined);
    return next;
  }

  private takeBuffered(): Buffer {
    const all = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.buffered);
    this.parts = [];
    this.buffered = 0;
    return all;
  }

  commit(input: NewEnvelope): Promise<string> {
    if (input.recipients.length === 0) return Promise.reject(new Error("cannot commit a message without recipients"));
    return this.commitWith((size, sha256) => ({
      ...input,
      id: this.id,
      receivedAt: new Date(this.now()).toISOString(),
      size,
      sha256,
      recipients: input.recipients.map((r) => ({ ...r, status: "pending" as const, attempts: 0 })),
    }));
  }

  /** Commits a whole envelope from elsewhere (`postern store import-spool`): its size and hash must match. */
  commitEnvelope(env: Envelope): Promise<string> {
    return this.commitWith((size, sha256) => {
      if (env.id !== this.id || env.size !== size || (env.sha256 !== undefined && env.sha256 !== sha256)) {
        throw new Error(`message ${env.id}: its bytes do not match its envelope (size or SHA-256)`);
      }
      return { ...env, sha256 };
    });
  }

  private async commitWith(envelopeOf: (size: number, sha256: string) => Envelope): Promise<string> {
    if (this.state !== "open") throw new Error(`queue writer is ${this.state}`);
    this.state = "committing";
    try {
      await this.tail;
      if (this.writeError !== undefined) throw this.writeError;
      const env = envelopeOf(this.written, this.hash.digest("hex"));
      const row = [env.id, ...rowValues(env)];
      const rest = this.takeBuffered();
      if (!this.client) {
        // The whole message is one chunk: one statement, its own transaction.
        await this.db.run(sql.insertSmall, [...row, rest]);
      } else {
        const c = this.client;
        if (rest.length > 0) await c.query({ name: sql.insertChunk.name, text: sql.insertChunk.text, values: [this.id, this.seq++, rest] });
        await c.query({ name: sql.insertMessage.name, text: sql.insertMessage.text, values: row });
        await c.query("COMMIT");
        this.releaseClient(false);
      }
      this.state = "committed";
      return this.id;
    } catch (err) {
      this.state = "failed";
      await this.rollback();
      throw err;
    }
  }

  async abort(): Promise<void> {
    if (this.state === "committed" || this.state === "aborted") return;
    if (this.state === "committing") throw new Error("abort() during commit()");
    this.state = "aborted";
    this.parts = [];
    await this.rollback();
  }

  private async rollback(): Promise<void> {
    await this.tail;
    const c = this.client;
    if (!c) return;
    let broken = false;
    try {
      await c.query("ROLLBACK");
    } catch {
      broken = true; // a connection in an unknown state never goes back to the pool
    }
    this.releaseClient(broken);
  }

  private releaseClient(broken: boolean): void {
    const c = this.client;
    this.client = undefined;
    c?.removeListener("error", ignoreError);
    c?.release(broken);
  }
}
