/**
 * Cluster-wide counters on PostgreSQL (`store.backend: postgres`): the AUTH throttle (failures per
 * client and per account from a block, lockouts) and per-user send limits, so ten wrong passwords
 * spread over three nodes lock an account as ten on one would. One row per key in `counters`,
 * counted by one atomic UPSERT … RETURNING (concurrent failures on several nodes each see their own
 * count); times are the database's clock, the same for every node.
 *
 * The window is fixed where the in-memory counters slide: it opens with the first event and the
 * count starts over once it has passed. Within one window the limits are exact; across a window's
 * end a client can at most double them, and a lockout, once reached, lasts lockoutSec either way.
 *
 * Never rejects: a database error is logged, a check then allows and a failure costs no penalty
 * (the logins themselves fail while the user store, in the same database, is away).
 */
import type { Decision } from "../../base/decision.js";
import type { InfoWarnLog } from "../../base/log.js";
import {
  accountCounterKey,
  failurePenaltyMs,
  ipCounterKey,
  lockoutOf,
  type AuthThrottleConfig,
  type AuthThrottlePort,
  type Lockout,
  type ThrottleVerdict,
} from "../../policy/auth-throttle.js";
import { NetworkList } from "../../policy/networks.js";
import { ALLOW } from "../../base/decision.js";
import { messageLimitDecision, recipientLimitDecision, type SendLimitsConfig } from "../../policy/send-limits.js";
import type { SendLimitsPort } from "../../smtp/session-types.js";
import { statement, type PgPool } from "./pool.js";

/**
 * One more event for a key: $1 key, $2 window (s), $3 events that lock (0: never), $4 lockout (s),
 * $5 amount added (recipients). A passed window starts over; a lockout begun now says so.
 */
const COUNT = statement(
  "counters-count",
  `INSERT INTO counters AS c (key, window_start, events, amount, locked_until, locked_at)
   VALUES ($1, now(), 1, $5,
     CASE WHEN $3 > 0 AND 1 >= $3 THEN now() + make_interval(secs => $4) END,
     CASE WHEN $3 > 0 AND 1 >= $3 THEN now() END)
   ON CONFLICT (key) DO UPDATE SET
     window_start = CASE WHEN c.window_start > now() - make_interval(secs => $2) THEN c.window_start ELSE now() END,
     events = CASE WHEN c.window_start > now() - make_interval(secs => $2) THEN c.events + 1 ELSE 1 END,
     amount = CASE WHEN c.window_start > now() - make_interval(secs => $2) THEN c.amount + $5 ELSE $5 END,
     locked_until = CASE WHEN $3 > 0 AND (CASE WHEN c.window_start > now() - make_interval(secs => $2) THEN c.events + 1 ELSE 1 END) >= $3
       THEN now() + make_interval(secs => $4) ELSE c.locked_until END,
     locked_at = CASE WHEN $3 > 0 AND (CASE WHEN c.window_start > now() - make_interval(secs => $2) THEN c.events + 1 ELSE 1 END) >= $3
       AND (c.locked_until IS NULL OR c.locked_until <= now()) THEN now() ELSE c.locked_at END
   RETURNING events, amount, locked_at IS NOT NULL AND locked_at = now() AS lock_started`,
);
const LOCKED = statement(
  "counters-locked",
  "SELECT ceil(extract(epoch FROM locked_until - now()))::int AS retry_after_sec FROM counters WHERE key = $1 AND locked_until > now()",
);
const ALL_LOCKED = statement(
  "counters-all-locked",
  "SELECT key, ceil(extract(epoch FROM locked_until - now()))::int AS retry_after_sec FROM counters WHERE locked_until > now() AND key LIKE $1 ORDER BY key",
);
const WINDOW = statement("counters-window", "SELECT events, amount FROM counters WHERE key = $1 AND window_start > now() - make_interval(secs => $2)");
const FORGET = statement("counters-forget", "DELETE FROM counters WHERE key = $1");
/** Rows whose window and lockout are long over ($1: the longest window, s; $2: key prefix pattern). */
const SWEEP = statement(
  "counters-sweep",
  `DELETE FROM counters WHERE key LIKE $2 AND window_start < now() - make_interval(secs => $1)
     AND (locked_until IS NULL OR locked_until < now())`,
);

/** A sweep of old rows after this many writes by this node. */
const SWEEP_EVERY = 1000;

class Sweeper {
  private writes = 0;
  constructor(
    private readonly pool: PgPool,
    private readonly pattern: string,
    private readonly windowSec: () => number,
  ) {}
  wrote(): void {
    if (++this.writes % SWEEP_EVERY !== 0) return;
    this.pool.run(SWEEP, [this.windowSec(), this.pattern]).catch(() => undefined);
  }
}

export class PgAuthThrottle implements AuthThrottlePort {
  private readonly exempt: NetworkList;
  private readonly sweeper: Sweeper;

  constructor(
    private readonly pool: PgPool,
    private readonly config: AuthThrottleConfig,
    exempt: readonly string[] = [],
    private readonly log?: InfoWarnLog,
  ) {
    this.exempt = new NetworkList(exempt);
    this.sweeper = new Sweeper(pool, "%", () => Math.max(config.windowSec, 3600));
  }

  isExempt(ip: string): boolean {
    return this.exempt.contains(ip);
  }

  checkIp(ip: string): Promise<ThrottleVerdict> {
    return this.verdict(ipCounterKey(ip), "ip", ip);
  }

  checkAccount(ip: string, user: string): Promise<ThrottleVerdict> {
    return this.verdict(accountCounterKey(this.config, ip, user), "account", ip);
  }

  async failed(ip: string, user?: string): Promise<{ penaltyMs: number; locked: ("ip" | "account")[] }> {
    if (this.isExempt(ip)) return { penaltyMs: 0, locked: [] };
    const c = this.config;
    const count = (key: string, threshold: number) =>
      this.pool.run<{ events: number; lock_started: boolean }>(COUNT, [key, c.windowSec, threshold, c.lockoutSec, 0]).then((r) => r.rows[0]!);
    try {
      const [ipCount, account] = await Promise.all([
        count(ipCounterKey(ip), c.ipFailures),
        user ? count(accountCounterKey(c, ip, user), c.accountFailures) : undefined,
      ]);
      this.sweeper.wrote();
      const locked: ("ip" | "account")[] = [];
      if (ipCount.lock_started) locked.push("ip");
      if (account?.lock_started) locked.push("account");
      return { penaltyMs: failurePenaltyMs(c, ipCount.events), locked };
    } catch (err) {
      this.log?.warn({ event: "auth-throttle-error", err: (err as Error).message }, "AUTH throttle: database error, failure not counted");
      return { penaltyMs: 0, locked: [] };
    }
  }

  /** A success forgets the account's failures from this block (the IP's own count stays). */
  async succeeded(ip: string, user: string): Promise<void> {
    try {
      await this.pool.run(FORGET, [accountCounterKey(this.config, ip, user)]);
    } catch (err) {
      this.log?.warn({ event: "auth-throttle-error", err: (err as Error).message }, "AUTH throttle: database error");
    }
  }

  /** Every lockout in force across the cluster. */
  async lockedOut(): Promise<Lockout[]> {
    try {
      const rows = [
        ...(await this.pool.run<{ key: string; retry_after_sec: number }>(ALL_LOCKED, ["ip %"])).rows,
        ...(await this.pool.run<{ key: string; retry_after_sec: number }>(ALL_LOCKED, ["acct %"])).rows,
      ];
      return rows.map((r) => lockoutOf(r.key, r.retry_after_sec));
    } catch {
      return [];
    }
  }

  private async verdict(key: string, scope: "ip" | "account", ip: string): Promise<ThrottleVerdict> {
    if (this.isExempt(ip)) return { refused: false };
    try {
      const row = (await this.pool.run<{ retry_after_sec: number }>(LOCKED, [key])).rows[0];
      return row ? { refused: true, scope, retryAfterSec: Math.max(1, row.retry_after_sec) } : { refused: false };
    } catch (err) {
      this.log?.warn({ event: "auth-throttle-error", err: (err as Error).message }, "AUTH throttle: database error, not refused");
      return { refused: false };
    }
  }
}

const HOUR_SEC = 3600;

/** Per-user sending limits across the cluster (src/policy/send-limits.ts decides; this counts). */
export class PgSendLimits implements SendLimitsPort {
  private readonly sweeper: Sweeper;

  constructor(
    private readonly pool: PgPool,
    private readonly config: SendLimitsConfig,
    private readonly log?: InfoWarnLog,
  ) {
    this.sweeper = new Sweeper(pool, "send %", () => HOUR_SEC);
  }

  async checkMessage(user: string): Promise<Decision> {
    const limit = this.config.messagesPerHour;
    if (limit === 0) return ALLOW;
    const usage = await this.usage(user);
    return usage ? messageLimitDecision(limit, usage.messages) : ALLOW;
  }

  async checkRecipient(user: string, pending: number): Promise<Decision> {
    const limit = this.config.recipientsPerHour;
    if (limit === 0) return ALLOW;
    const usage = await this.usage(user);
    return usage ? recipientLimitDecision(limit, usage.recipients, pending) : ALLOW;
  }

  async sent(user: string, recipients: number): Promise<void> {
    try {
      await this.pool.run(COUNT, [sendKey(user), HOUR_SEC, 0, 0, recipients]);
      this.sweeper.wrote();
    } catch (err) {
      this.log?.warn({ event: "send-limits-error", err: (err as Error).message, user }, "send limits: database error, message not counted");
    }
  }

  /** This hour's usage; undefined when the database cannot say (the message is then allowed). */
  private async usage(user: string): Promise<{ messages: number; recipients: number } | undefined> {
    try {
      const row = (await this.pool.run<{ events: number; amount: string }>(WINDOW, [sendKey(user), HOUR_SEC])).rows[0];
      return { messages: row?.events ?? 0, recipients: Number(row?.amount ?? 0) };
    } catch (err) {
      this.log?.warn({ event: "send-limits-error", err: (err as Error).message, user }, "send limits: database error, not limited");
      return undefined;
    }
  }
}

function sendKey(user: string): string {
  return `send ${user.toLowerCase()}`;
}
