/**
 * Prometheus metrics, fed by the log events the server already writes (so the session stays pure
 * and metrics and logs can never disagree) plus gauges read from the running server on scrape.
 * Note: an event only counts when its log level is enabled (info, the default, covers all).
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { LogObserver } from "./log.js";

export interface MetricsSources {
  /** Open SMTP connections per listener mode. */
  connections(): Record<string, number>;
  /** Queue size per state. */
  queue(): Record<string, number>;
  /** Connection limiter counters, when the server has them. */
  limits?(): { connections: number; clients: number; refused: Record<string, number> };
}

const text = (v: unknown, fallback = "unknown") => (typeof v === "string" && v !== "" ? v.slice(0, 80) : fallback);

export class Metrics {
  readonly registry = new Registry();
  private sources: MetricsSources | undefined;
  private readonly connections = new Counter({ name: "postern_connections_total", help: "SMTP connections accepted, per listener", labelNames: ["listener"], registers: [this.registry] });
  private readonly tls = new Counter({ name: "postern_tls_sessions_total", help: "TLS sessions established (STARTTLS or implicit), per protocol version", labelNames: ["listener", "version"], registers: [this.registry] });
  private readonly tlsFailures = new Counter({ name: "postern_tls_failures_total", help: "TLS handshakes that failed", registers: [this.registry] });
  private readonly auth = new Counter({ name: "postern_auth_total", help: "AUTH attempts per mechanism, result and failure reason", labelNames: ["mechanism", "result", "reason"], registers: [this.registry] });
  private readonly accepted = new Counter({ name: "postern_messages_accepted_total", help: "Messages queued, per listener (local: postern sendmail)", labelNames: ["listener"], registers: [this.registry] });
  private readonly refused = new Counter({ name: "postern_messages_refused_total", help: "Refusals per stage (mail, rcpt, data) and reason", labelNames: ["stage", "reason"], registers: [this.registry] });
  private readonly deliveries = new Counter({ name: "postern_deliveries_total", help: "Delivery attempts per recipient, per outcome", labelNames: ["outcome"], registers: [this.registry] });
  private readonly limitHits = new Counter({ name: "postern_limit_hits_total", help: "Sessions that hit a limit, per limit", labelNames: ["limit"], registers: [this.registry] });
  private readonly reloads = new Counter({ name: "postern_reloads_total", help: "SIGHUP reloads, per result", labelNames: ["result"], registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "postern_" });
    const self = this;
    new Gauge({
      name: "postern_sessions_open",
      help: "Open SMTP sessions, per listener",
      labelNames: ["listener"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [listener, n] of Object.entries(self.sources?.connections() ?? {})) this.set({ listener }, n);
      },
    });
    new Gauge({
      name: "postern_queue_messages",
      help: "Messages in the queue, per state",
      labelNames: ["state"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [state, n] of Object.entries(self.sources?.queue() ?? {})) this.set({ state }, n);
      },
    });
    new Gauge({
      name: "postern_limiter",
      help: "Connection limiter state: open connections, distinct clients, refusals so far per reason",
      labelNames: ["what"],
      registers: [this.registry],
      collect() {
        this.reset();
        const l = self.sources?.limits?.();
        if (!l) return;
        this.set({ what: "connections" }, l.connections);
        this.set({ what: "clients" }, l.clients);
        for (const [reason, n] of Object.entries(l.refused)) this.set({ what: `refused-${reason}` }, n);
      },
    });
  }

  attach(sources: MetricsSources): void {
    this.sources = sources;
  }

  /** The log observer: one switch over the event names the README lists. */
  readonly observe: LogObserver = (f, bindings) => {
    const listener = text(f.listener ?? bindings.listener, "local");
    switch (f.event) {
      case "connect":
        this.connections.inc({ listener });
        if (typeof f.tls === "string") this.tls.inc({ listener, version: f.tls });
        return;
      case "tls":
        return void this.tls.inc({ listener, version: text(f.version) });
      case "tls-failed":
        return void this.tlsFailures.inc();
      case "auth-success":
        return void this.auth.inc({ mechanism: text(f.mechanism), result: "success", reason: "" });
      case "auth-failure":
        return void this.auth.inc({ mechanism: text(f.mechanism), result: "failure", reason: text(f.reason) });
      case "auth-refused":
        return void this.auth.inc({ mechanism: text(f.mechanism, "none"), result: "refused", reason: text(f.reason) });
      case "queued":
        return void this.accepted.inc({ listener: f.via === "local" ? "local" : listener });
      case "mail-refused":
        return void this.refused.inc({ stage: "mail", reason: text(f.reason) });
      case "rcpt-refused":
        return void this.refused.inc({ stage: "rcpt", reason: text(f.reason) });
      case "data-refused":
        return void this.refused.inc({ stage: "data", reason: text(f.reason) });
      case "delivered":
      case "deferred":
      case "failed":
      case "expired":
        return void this.deliveries.inc({ outcome: f.event });
      case "limit":
        return void this.limitHits.inc({ limit: text(f.limit) });
      case "reload":
        return void this.reloads.inc({ result: f.ok === false ? "failed" : "ok" });
    }
  };
}
