/**
 * The queue runner: decides when each spooled message is (re)tried, runs attempts with bounded
 * concurrency, and records every recipient's outcome durably before moving on (SECURITY rule 18).
 *
 * Retry policy (RFC 5321 §4.5.4.1: retry at least 30 min apart, give up after 4–5 days): the
 * n-th deferral waits firstRetrySec · 2^(n−1), capped at maxBackoffSec; a recipient still
 * deferred maxLifetimeSec after receivedAt fails. The last retry is pulled in to the expiry time
 * so a message does not outlive its lifetime by a whole back-off step.
 */
import { isSharedQueueStore, type QueueLease, type QueueStore, type SharedQueueStore } from "./store.js";
import type { DeliverFn, Envelope, EnvelopeRecipient, RecipientResult, RetrySchedule } from "./types.js";
import type { Log } from "../base/log.js";

export const DEFAULT_RETRY_SCHEDULE: RetrySchedule = {
  firstRetrySec: 300,
  maxBackoffSec: 4000,
  maxLifetimeSec: 5 * 24 * 3600,
};

/**
 * How long a lease on a message lasts: longer than any one attempt (SMTP timeouts are minutes), so
 * it expires only when its holder died; a store shared between nodes then lets another take over.
 */
export const DEFAULT_LEASE_MS = 60 * 60 * 1000;

export interface QueueRunnerOptions {
  /** The queue store (the file spool, spool.ts); the runner never sees a path. */
  spool: QueueStore;
  deliver: DeliverFn;
  retrySchedule?: Partial<RetrySchedule>;
  /** Messages attempted at the same time. */
  concurrency: number;
  logger: Log;
  now?: () => number;
  /**
   * Called once no recipient is pending and at least one failed or asked for a success notice
   * (NOTIFY=SUCCESS); may run again after a crash, so it must be idempotent (src/queue/bounce.ts).
   */
  onFinal?: (env: Envelope, failed: EnvelopeRecipient[], lease: QueueLease) => Promise<void>;
  /**
   * Called after an attempt that left recipients pending (delay warnings); same idempotence rule.
   * Both run under the attempt's lease, which they pass with their changes to the envelope.
   */
  onDeferred?: (env: Envelope, lease: QueueLease) => Promise<void>;
  /** Lease length for an attempt or an admin change (ms). */
  leaseMs?: number;
  /**
   * A store shared between nodes (isSharedQueueStore): how often to look for due messages this
   * node has no timer for — enqueued by another node, or left by a dead one (ms; default 1000).
   */
  pollMs?: number;
}

/** Delay (seconds) before the next attempt after the `attempts`-th deferral (1-based). */
export function backoffSeconds(attempts: number, schedule: RetrySchedule): number {
  const exponent = Math.min(Math.max(attempts - 1, 0), 40);
  return Math.min(schedule.firstRetrySec * 2 ** exponent, schedule.maxBackoffSec);
}

export class QueueRunner {
  private readonly spool: QueueStore;
  private readonly leaseMs: number;
  private readonly deliver: DeliverFn;
  private readonly schedule: RetrySchedule;
  private readonly concurrency: number;
  private readonly logger: Log;
  private readonly now: () => number;
  private readonly onFinal?: QueueRunnerOptions["onFinal"];
  private readonly onDeferred?: QueueRunnerOptions["onDeferred"];

  /** Waiting messages: id → due time (ms). */
  private readonly due = new Map<string, number>();
  /** Due messages waiting for a free slot, in order. */
  private readonly ready: string[] = [];
  /** In-flight attempts; membership is the per-message lock. */
  private readonly running = new Map<string, Promise<void>>();
  /** Ids whose next attempt should ignore per-recipient nextAttemptAt (flush). */
  private readonly forced = new Set<string>();
  private idleWaiters: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  /** Set when the store is shared between nodes: the runner polls it for due work. */
  private readonly shared?: SharedQueueStore;
  private readonly pollMs: number;
  private pollTimer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  /** The last poll filled every free slot: poll again as soon as a slot frees up. */
  private backlog = false;

  constructor(opts: QueueRunnerOptions) {
    this.spool = opts.spool;
    this.deliver = opts.deliver;
    this.schedule = { ...DEFAULT_RETRY_SCHEDULE, ...opts.retrySchedule };
    this.concurrency = Math.max(1, Math.floor(opts.concurrency));
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
    this.onFinal = opts.onFinal;
    this.onDeferred = opts.onDeferred;
    this.leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
    if (isSharedQueueStore(opts.spool)) this.shared = opts.spool;
    this.pollMs = opts.pollMs ?? 1000;
  }

  /** Loads every committed message from the spool (the queue survives restarts) and runs what is due. */
  async start(): Promise<void> {
    this.stopped = false;
    if (this.shared) {
      // The shared store says what is due; reading every envelope of the cluster's queue here
      // would only duplicate that.
      this.logger.info({ event: "queue-started", shared: true, pollMs: this.pollMs }, "queue: started (shared store, polling)");
      this.poll();
      return;
    }
    for (const id of await this.spool.list()) {
      if (this.running.has(id)) continue;
      try {
        const env = await this.spool.readEnvelope(id);
        if (!env.held) this.due.set(id, this.nextDue(env));
      } catch (err) {
        this.logger.error({ event: "envelope-unreadable", id, err: String(err) }, "queue: unreadable envelope left in spool");
      }
    }
    this.logger.info({ event: "queue-started", messages: this.due.size }, "queue: started");
    void this.runDue();
  }

  /** A message was just committed: try it at once. */
  enqueued(id: string): void {
    if (this.stopped) return; // still on disk; start() picks it up
    this.due.set(id, this.now());
    void this.runDue();
  }

  /**
   * Schedules committed messages the runner was not told of (a worker that died between its commit
   * and its notice: src/server/workers.ts); what it already knows keeps its schedule.
   */
  async rescan(): Promise<number> {
    if (this.stopped) return 0;
    if (this.shared) {
      this.poll(); // the shared store says what is due; polling finds it
      return 0;
    }
    let found = 0;
    for (const id of await this.spool.list()) {
      if (this.due.has(id) || this.running.has(id) || this.ready.includes(id)) continue;
      try {
        const env = await this.spool.readEnvelope(id);
        if (env.held) continue;
        this.due.set(id, this.nextDue(env));
        found++;
      } catch {
        // gone meanwhile (delivered, deleted): nothing to schedule
      }
    }
    if (found > 0) void this.runDue();
    return found;
  }

  /** Retries every queued message now, ignoring back-off. */
  async flush(): Promise<void> {
    for (const id of await this.spool.list()) {
      if (!this.due.has(id) && !this.running.has(id) && !this.ready.includes(id)) this.due.set(id, 0);
    }
    for (const id of this.due.keys()) {
      this.due.set(id, 0);
      this.forced.add(id);
    }
    await this.runDue();
  }

  /** Starts every due attempt and resolves once nothing is ready or in flight. */
  runDue(): Promise<void> {
    if (!this.stopped) {
      const t = this.now();
      const picked = [...this.due].filter(([id, at]) => at <= t && !this.running.has(id)).sort((a, b) => a[1] - b[1]);
      for (const [id] of picked) {
        this.due.delete(id);
        if (!this.ready.includes(id)) this.ready.push(id); // already waiting for a slot
      }
      this.pump();
    }
    this.arm();
    if (this.ready.length === 0 && this.running.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops starting attempts and waits for those in flight. Queued mail stays in the spool. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    await this.polling;
    for (const id of this.ready.splice(0)) this.due.set(id, this.now());
    await Promise.allSettled([...this.running.values()]);
  }

  /** Retries one message now, ignoring back-off (`postern queue flush ID`). */
  flushOne(id: string): Promise<void> {
    this.due.set(id, 0);
    this.forced.add(id);
    return this.runDue();
  }

  /** True while an attempt (or an exclusive admin operation) holds the message. */
  isActive(id: string): boolean {
    return this.running.has(id);
  }

  /**
   * Runs `fn` while no attempt can touch the message (hold, release, delete): waits for an
   * attempt in flight, then holds the message's lease, which `fn` passes to the store with its
   * change. The message is unscheduled; `fn` or the caller schedules it again if it should stay
   * in the queue (reschedule()).
   */
  async exclusive<T>(id: string, fn: (lease: QueueLease) => Promise<T>): Promise<T> {
    while (this.running.has(id)) await this.running.get(id)!.catch(() => undefined);
    this.due.delete(id);
    const at = this.ready.indexOf(id);
    if (at >= 0) this.ready.splice(at, 1);
    const work = (async () => {
      const lease = await this.spool.claim(id, this.leaseMs);
      if (!lease) throw new Error(`message ${id} is being worked on elsewhere; try again later`);
      try {
        return await fn(lease);
      } finally {
        await lease.release();
      }
    })();
    const lock = work.then(
      () => undefined,
      () => undefined,
    );
    this.running.set(id, lock);
    try {
      return await work;
    } finally {
      this.running.delete(id);
      this.pump();
      this.arm();
    }
  }

  /** Puts a message (back) on the schedule from its envelope, unless it is held. */
  reschedule(env: Envelope): void {
    if (env.held || this.stopped) return;
    this.due.set(env.id, this.nextDue(env));
    void this.runDue();
  }

  /** Due time (ms) of each waiting message, for `queue list` and tests. */
  scheduled(): Map<string, number> {
    return new Map(this.due);
  }

  private pump(): void {
    while (!this.stopped && this.running.size < this.concurrency && this.ready.length > 0) {
      const id = this.ready.shift()!;
      if (this.running.has(id)) continue;
      this.launch(id, this.attempt(id));
    }
    if (this.ready.length === 0 && this.running.size === 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
    if (this.backlog && !this.polling && this.running.size < this.concurrency) this.poll();
  }

  /**
   * Shared store: claims due messages for the free slots (FOR UPDATE SKIP LOCKED, so nodes never
   * claim the same one) and attempts them; then polls again after pollMs, or as soon as a slot
   * frees up when the last poll found more than it could take.
   */
  private poll(): void {
    const store = this.shared;
    if (!store || this.stopped || this.polling) return;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    const free = this.concurrency - this.running.size - this.ready.length;
    this.polling = (async () => {
      const leases = free > 0 ? await store.claimDue(free, this.leaseMs) : [];
      this.backlog = free > 0 && leases.length === free;
      for (const lease of leases) {
        const id = lease.id;
        if (this.stopped || this.running.has(id)) {
          await lease.release();
          continue;
        }
        this.due.delete(id);
        const at = this.ready.indexOf(id);
        if (at >= 0) this.ready.splice(at, 1);
        this.launch(id, this.attemptWith(id, lease));
      }
    })()
      .catch((err: unknown) => {
        this.backlog = false;
        this.logger.error({ event: "queue-poll-error", err: String(err) }, "queue: could not poll the shared store");
      })
      .finally(() => {
        this.polling = undefined;
        if (this.stopped) return;
        if (this.backlog && this.running.size < this.concurrency) {
          setImmediate(() => this.poll());
          return;
        }
        this.pollTimer = setTimeout(() => this.poll(), this.pollMs);
        this.pollTimer.unref();
      });
  }

  /** Runs an attempt in a slot; `running` holding it is the per-message lock. */
  private launch(id: string, work: Promise<void>): void {
    const attempt = work
      .catch((err) => {
        // Anything unexpected (store I/O): keep the message and try again later.
        this.logger.error({ event: "attempt-error", id, err: String(err) }, "queue: attempt failed");
        this.due.set(id, this.now() + this.schedule.firstRetrySec * 1000);
      })
      .finally(() => {
        this.running.delete(id);
        this.pump();
        this.arm();
      });
    this.running.set(id, attempt);
  }

  /** One timer for the earliest due message; unref'd so it never keeps the process alive. */
  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopped || this.due.size === 0) return;
    let next = Infinity;
    for (const at of this.due.values()) if (at < next) next = at;
    const delay = Math.min(Math.max(next - this.now(), 0), 2 ** 31 - 1);
    this.timer = setTimeout(() => void this.runDue(), delay);
    this.timer.unref();
  }

  private nextDue(env: Envelope): number {
    const times = env.recipients.filter((r) => r.status === "pending").map((r) => (r.nextAttemptAt ? Date.parse(r.nextAttemptAt) : 0));
    // No pending recipient: a crash came between the last update and removal; finish now.
    return times.length === 0 ? 0 : Math.min(...times);
  }

  /** One attempt under the message's lease; without it (held elsewhere), a later try. */
  private async attempt(id: string): Promise<void> {
    const lease = await this.spool.claim(id, this.leaseMs);
    if (!lease) {
      this.forced.delete(id);
      // Shared store: another node has it now; polling finds it again if it is still due later.
      if (this.shared) this.due.delete(id);
      else this.due.set(id, this.now() + this.schedule.firstRetrySec * 1000);
      return;
    }
    return this.attemptWith(id, lease);
  }

  private async attemptWith(id: string, lease: QueueLease): Promise<void> {
    try {
      await this.attemptLeased(id, lease);
    } finally {
      await lease.release();
    }
  }

  private async attemptLeased(id: string, lease: QueueLease): Promise<void> {
    const forced = this.forced.delete(id);
    let env: Envelope;
    try {
      env = await this.spool.readEnvelope(id);
    } catch (err) {
      this.due.delete(id);
      // Gone from the spool: delivered and removed since a flush() listed it, or deleted by the admin.
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      this.logger.error({ event: "envelope-unreadable", id, err: String(err) }, "queue: cannot read envelope; not retrying");
      return;
    }
    if (env.held) {
      this.due.delete(id);
      this.logger.info({ event: "held-skipped", id }, "queue: message is on hold; not attempted");
      return;
    }
    const t = this.now();
    const batch = env.recipients.filter((r) => r.status === "pending" && (forced || !r.nextAttemptAt || Date.parse(r.nextAttemptAt) <= t));
    if (batch.length > 0) {
      const results = await this.deliverSafely(env, batch);
      const after = this.now();
      for (const rcpt of batch) this.applyResult(env, rcpt, results.get(rcpt.address), after);
      // Durable before anything else happens: a crash now must not repeat delivered recipients.
      // A message that is simply done (every recipient delivered, no notice to send) skips this:
      // its removal in finish() is the durable record, one fsync round instead of two.
      if (!this.isSimplyDone(env)) await this.spool.updateEnvelope(env, lease);
    }
    if (env.recipients.some((r) => r.status === "pending")) {
      if (batch.length > 0 && this.onDeferred) {
        await this.onDeferred(env, lease).catch((err: unknown) => {
          this.logger.error({ event: "deferred-hook-error", id, err: String(err) }, "queue: delay notice failed");
        });
      }
      this.due.set(id, this.nextDue(env));
      return;
    }
    await this.finish(env, lease);
  }

  private async deliverSafely(env: Envelope, batch: EnvelopeRecipient[]): Promise<Map<string, RecipientResult>> {
    const byAddress = new Map<string, RecipientResult>();
    try {
      const results = await this.deliver(
        env,
        this.spool.message(env),
        batch.map((r) => ({ ...r })),
      );
      for (const r of results) byAddress.set(r.address, r);
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      for (const r of batch) byAddress.set(r.address, { address: r.address, outcome: "deferred", detail });
    }
    return byAddress;
  }

  private applyResult(env: Envelope, rcpt: EnvelopeRecipient, result: RecipientResult | undefined, t: number): void {
    const outcome = result?.outcome ?? "deferred";
    const detail = result?.detail ?? "no result from the deliverer";
    rcpt.attempts++;
    rcpt.lastResult = detail;
    if (result?.remoteMta !== undefined) rcpt.remoteMta = result.remoteMta;
    if (result?.dsnPassedOn !== undefined) rcpt.dsnPassedOn = result.dsnPassedOn;
    if (result?.tlsPolicy !== undefined) rcpt.tlsPolicy = result.tlsPolicy;
    const log = { id: env.id, to: rcpt.address, attempts: rcpt.attempts, detail, ...(result?.tlsPolicy ? { tlsPolicy: result.tlsPolicy } : {}) };
    if (outcome === "delivered" || outcome === "failed") {
      rcpt.status = outcome;
      delete rcpt.nextAttemptAt;
      this.logger.info({ event: outcome, ...log }, outcome === "delivered" ? "queue: delivered" : "queue: failed permanently");
      return;
    }
    const expiresAt = Date.parse(env.receivedAt) + this.schedule.maxLifetimeSec * 1000;
    if (t >= expiresAt) {
      rcpt.status = "failed";
      rcpt.lastResult = `expired after ${rcpt.attempts} attempts; last error: ${detail}`;
      delete rcpt.nextAttemptAt;
      this.logger.warn({ event: "expired", ...log }, "queue: lifetime exceeded, failed");
      return;
    }
    const next = Math.min(t + backoffSeconds(rcpt.attempts, this.schedule) * 1000, expiresAt);
    rcpt.nextAttemptAt = new Date(next).toISOString();
    this.logger.info({ event: "deferred", ...log, nextAttemptAt: rcpt.nextAttemptAt }, "queue: deferred");
  }

  private isSimplyDone(env: Envelope): boolean {
    return env.recipients.every((r) => r.status === "delivered" && !r.notify?.includes("SUCCESS"));
  }

  /** No recipient pending: bounce what failed, then drop the message. */
  private async finish(env: Envelope, lease: QueueLease): Promise<void> {
    const failed = env.recipients.filter((r) => r.status === "failed");
    const successNotice = env.recipients.some((r) => r.status === "delivered" && r.notify?.includes("SUCCESS"));
    if ((failed.length > 0 || successNotice) && this.onFinal) {
      try {
        await this.onFinal(env, failed, lease);
      } catch (err) {
        this.logger.error({ event: "final-hook-error", id: env.id, err: String(err) }, "queue: final hook failed; will retry");
        this.due.set(env.id, this.now() + this.schedule.firstRetrySec * 1000);
        return;
      }
    }
    await this.spool.remove(env.id, lease);
    this.due.delete(env.id); // an enqueued()/flush() that raced this attempt must not revive it
    this.logger.info({ event: "removed", id: env.id, failed: failed.length }, "queue: message done, removed");
  }
}
