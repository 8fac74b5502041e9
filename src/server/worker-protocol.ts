/**
 * The messages between the primary and its workers (src/server/workers.ts, worker-main.ts), over
 * the fork IPC channel with structured clone ("advanced" serialization: Buffers pass as they are).
 */
import type { Registry } from "prom-client";
import type { Config } from "../config/schema.js";
import type { SpoolFault } from "../queue/spool-writer.js";
import type { ReloadReport } from "./operate.js";
import type { SharedLimitEvent } from "./shared-limits.js";
import type { TlsMaterial } from "./tls.js";
import type { HourlySeries } from "./hourly-counters.js";

export type WorkerMetrics = Awaited<ReturnType<Registry["getMetricsAsJSON"]>>;

/** Requests that get one answer each, matched by `seq`. */
export type WorkerQuestion = { op: "reload"; config: Config } | { op: "drain"; graceMs: number } | { op: "metrics" } | { op: "close" };

export type ToWorker =
  | { t: "start"; worker: number; config: Config; tlsMaterial: TlsMaterial; spoolFault?: SpoolFault }
  /** Comes with the accepted socket as its handle; `listener` indexes config.listeners. */
  | { t: "conn"; listener: number }
  | { t: "shared"; from: string; event: SharedLimitEvent }
  | { t: "peer-gone"; from: string }
  | { t: "ask"; seq: number; q: WorkerQuestion };

export type FromWorker =
  | { t: "ready" }
  | { t: "failed"; error: string }
  | { t: "queued"; id: string }
  | { t: "shared"; event: SharedLimitEvent }
  /** At most once a second, when something changed: the dashboard's hourly counts since the last, and open sessions. */
  | { t: "stats"; hourly: Partial<Record<HourlySeries, number>>; sessions: Record<string, number> }
  | { t: "answer"; seq: number; ok: true; result?: ReloadReport | { remaining: number } | WorkerMetrics }
  | { t: "answer"; seq: number; ok: false; error: string };
