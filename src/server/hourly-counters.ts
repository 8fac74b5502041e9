/**
 * Per-hour counts of the last 24 hours, for the web dashboard's chart (src/web/ui): fed by the
 * same log events as the Prometheus counters (metrics.ts), kept in memory only (a restart starts
 * an empty day; /metrics is the long-term record).
 */

export const HOURLY_SERIES = ["accepted", "delivered", "deferred", "bounced", "authFailures"] as const;
export type HourlySeries = (typeof HOURLY_SERIES)[number];

/** Log event → series (delivery outcomes count per recipient, as postern_deliveries_total does). */
const EVENT_SERIES: Record<string, HourlySeries> = {
  queued: "accepted",
  delivered: "delivered",
  deferred: "deferred",
  failed: "bounced",
  expired: "bounced",
  "auth-failure": "authFailures",
  "web-login-failure": "authFailures",
};

const HOUR_MS = 3_600_000;
export const HOURS_KEPT = 24;

export interface HourBucket {
  /** Start of the hour, ms since the epoch. */
  start: number;
  counts: Record<HourlySeries, number>;
}

const zero = (): Record<HourlySeries, number> => ({ accepted: 0, delivered: 0, deferred: 0, bounced: 0, authFailures: 0 });

export class HourlyCounters {
  /** Ring of HOURS_KEPT buckets indexed by hour number modulo HOURS_KEPT. */
  private readonly buckets: HourBucket[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  /** A LogObserver's body: counts the events it knows, ignores the rest. */
  observe(fields: Record<string, unknown>): void {
    const series = typeof fields.event === "string" ? EVENT_SERIES[fields.event] : undefined;
    if (series) this.add(series);
  }

  add(series: HourlySeries, n = 1): void {
    const start = Math.floor(this.now() / HOUR_MS) * HOUR_MS;
    const slot = (start / HOUR_MS) % HOURS_KEPT;
    let bucket = this.buckets[slot];
    if (!bucket || bucket.start !== start) this.buckets[slot] = bucket = { start, counts: zero() };
    bucket.counts[series] += n;
  }

  /** The last 24 hours, oldest first, the current hour last; hours without events count zero. */
  last24h(): HourBucket[] {
    const current = Math.floor(this.now() / HOUR_MS) * HOUR_MS;
    const out: HourBucket[] = [];
    for (let i = HOURS_KEPT - 1; i >= 0; i--) {
      const start = current - i * HOUR_MS;
      const bucket = this.buckets[(start / HOUR_MS) % HOURS_KEPT];
      out.push({ start, counts: bucket && bucket.start === start ? { ...bucket.counts } : zero() });
    }
    return out;
  }

  /** Sums over the last 24 hours. */
  totals(): Record<HourlySeries, number> {
    const sum = zero();
    for (const b of this.last24h()) for (const s of HOURLY_SERIES) sum[s] += b.counts[s];
    return sum;
  }
}
