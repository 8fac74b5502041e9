/**
 * Prometheus metrics, fed by the log events the server already writes (so the session stays pure
 * and metrics and logs can never disagree) plus gauges read from the running server on scrape.
 * Note: an event only counts when its log level is enabled (info, the default, covers all).
 */
import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { LogObserver } from "./log.js";
import { SERVER_MECHANISMS } from "../sasl/index.js";
import { LISTENER_MODES } from "../base/listener-mode.js";
import { HourlyCounters } from "./hourly-counters.js";

export interface MetricsSources {
  /** Open SMTP connections per listener mode. */
  connections(): Record<string, number>;
  /** Queue size per state. */
  queue(): Record<string, number>;
  /** Connection limiter counters, when the server has them. */
  limits?(): { connections: number; clients: number; refused: Record<string, number> };
}

/**
 * Label values come only from closed sets (docs/SECURITY.md 11.6): every distinct value is a new
 * time series kept for the life of the process, so a value taken from client input (a made-up
 * AUTH mechanism, a refusal text naming an address) would let any client grow memory without
 * bound and put users' addresses on /metrics. Anything outside a set counts as `other`.
 */
const oneOf =
  (allowed: ReadonlySet<string>, fallback = "other") =>
  (v: unknown): string =>
    typeof v === "string" && allowed.has(v) ? v : fallback;

/** The SMTP listeners, and "local": the sendmail socket (src/server/local-submit.ts). */
const LISTENERS = new Set<string>([...LISTENER_MODES, "local"]);
const TLS_VERSIONS = new Set(["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]);
/** Ours, and the other SASL mechanisms Dovecot can pass through (IANA SASL registry names). */
const MECHANISMS = new Set([
  ...SERVER_MECHANISMS,
  "SCRAM-SHA-1",
  "SCRAM-SHA-1-PLUS",
  "SCRAM-SHA-256-PLUS",
  "OAUTHBEARER",
  "XOAUTH2",
  "GSSAPI",
  "GSS-SPNEGO",
  "NTLM",
  "OTP",
  "ANONYMOUS",
  "EXTERNAL",
]);
/** SaslFailureReason, and the exchange's own reasons (auth-exchange.ts, session.ts). */
const AUTH_REASONS = new Set([
  "malformed",
  "unknown-user",
  "bad-password",
  "authzid-not-permitted",
  "mechanism-unavailable",
  "no-usable-secret",
  "app-password-required",
  "channel-binding",
  "bad-token",
  "backend-error",
  "mechanism-not-allowed",
  "throttled",
  "no-tls",
  "cancelled",
  "abandoned",
]);
const LIMITS = new Set(["errors", "junkCommands", "authFailures", "unauthCommands", "session-lifetime", "data-rate", "unauth-commands"]);

/**
 * Refusal reasons are log texts (they name addresses: "sender x@y not owned by …"); the metric
 * gets a fixed code for each kind. An event may carry its own `code` when it is one of these.
 */
const REFUSAL_CODES: readonly [RegExp, string][] = [
  [/^relay denied/, "relay-denied"],
  [/^unknown local user/, "unknown-recipient"],
  [/^user lookup failed/, "lookup-failed"],
  [/^sender .* not owned by /, "sender-not-owned"],
  [/^From: header without an address/, "from-malformed"],
  [/^From: header .* not owned by /, "from-not-owned"],
  [/^login has no account/, "no-account"],
  [/^send limit: .*messages/, "send-limit-messages"],
  [/^send limit: .*recipients/, "send-limit-recipients"],
  [/^bare CR\/LF/, "bare-line-end"],
  [/^message too big/, "too-big"],
  [/^line too long/, "line-too-long"],
  [/^spool write failed/, "spool-error"],
  [/^Must issue a STARTTLS/, "tls-required"],
  [/^Authentication required/, "auth-required"],
];
const REFUSAL_CODE_SET = new Set(REFUSAL_CODES.map(([, code]) => code));

export function refusalCode(f: Record<string, unknown>): string {
  if (typeof f.code === "string" && REFUSAL_CODE_SET.has(f.code)) return f.code;
  const reason = typeof f.reason === "string" ? f.reason : "";
  return REFUSAL_CODES.find(([re]) => re.test(reason))?.[1] ?? "other";
}

const listenerOf = oneOf(LISTENERS);
const tlsVersion = oneOf(TLS_VERSIONS);
const limitOf = oneOf(LIMITS);
const authReason = oneOf(AUTH_REASONS);
const mechanismOf = (v: unknown): string => (typeof v === "string" ? oneOf(MECHANISMS)(v.toUpperCase()) : "none");

export class Metrics {
  readonly registry = new Registry();
  /** The same events per hour, last 24 hours: the web dashboard's chart (src/web/ui). */
  readonly hourly = new HourlyCounters();
  private sources: MetricsSources | undefined;
  private readonly connections = new Counter({
    name: "postern_connections_total",
    help: "SMTP connections accepted, per listener",
    labelNames: ["listener"],
    registers: [this.registry],
  });
  private readonly tls = new Counter({
    name: "postern_tls_sessions_total",
    help: "TLS sessions established (STARTTLS or implicit), per protocol version",
    labelNames: ["listener", "version"],
    registers: [this.registry],
  });
  private readonly tlsFailures = new Counter({ name: "postern_tls_failures_total", help: "TLS handshakes that failed", registers: [this.registry] });
  private readonly auth = new Counter({
    name: "postern_auth_total",
    help: "AUTH attempts per mechanism, result and failure reason",
    labelNames: ["mechanism", "result", "reason"],
    registers: [this.registry],
  });
  private readonly accepted = new Counter({
    name: "postern_messages_accepted_total",
    help: "Messages queued, per listener (local: postern sendmail)",
    labelNames: ["listener"],
    registers: [this.registry],
  });
  private readonly refused = new Counter({
    name: "postern_messages_refused_total",
    help: "Refusals per stage (mail, rcpt, data) and reason",
    labelNames: ["stage", "reason"],
    registers: [this.registry],
  });
  private readonly deliveries = new Counter({
    name: "postern_deliveries_total",
    help: "Delivery attempts per recipient, per outcome",
    labelNames: ["outcome"],
    registers: [this.registry],
  });
  private readonly limitHits = new Counter({
    name: "postern_limit_hits_total",
    help: "Sessions that hit a limit, per limit",
    labelNames: ["limit"],
    registers: [this.registry],
  });
  private readonly reloads = new Counter({
    name: "postern_reloads_total",
    help: "SIGHUP reloads, per result",
    labelNames: ["result"],
    registers: [this.registry],
  });

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

  /** The workers' metrics (src/server/workers.ts), summed with these on every scrape. */
  private others?: () => Promise<Awaited<ReturnType<Registry["getMetricsAsJSON"]>>[]>;

  combineWith(others: () => Promise<Awaited<ReturnType<Registry["getMetricsAsJSON"]>>[]>): void {
    this.others = others;
  }

  /** The Prometheus text for /metrics: this process's, or the sum over the primary and its workers. */
  async exposition(): Promise<string> {
    if (!this.others) return this.registry.metrics();
    const [own, others] = await Promise.all([this.registry.getMetricsAsJSON(), this.others()]);
    // Counters and gauges are summed across processes (prom-client's cluster aggregation).
    return AggregatorRegistry.aggregate([own, ...others]).metrics();
  }

  /** The log observer: one switch over the event names the README lists. */
  readonly observe: LogObserver = (f, bindings) => {
    this.hourly.observe(f);
    const listener = f.listener === undefined && bindings.listener === undefined ? "local" : listenerOf(f.listener ?? bindings.listener);
    switch (f.event) {
      case "connect":
        this.connections.inc({ listener });
        if (typeof f.tls === "string") this.tls.inc({ listener, version: tlsVersion(f.tls) });
        return;
      case "tls":
        return void this.tls.inc({ listener, version: tlsVersion(f.version) });
      case "tls-failed":
        return void this.tlsFailures.inc();
      case "auth-success":
        return void this.auth.inc({ mechanism: mechanismOf(f.mechanism), result: "success", reason: "" });
      case "auth-failure":
        return void this.auth.inc({ mechanism: mechanismOf(f.mechanism), result: "failure", reason: authReason(f.reason) });
      case "auth-refused":
        return void this.auth.inc({ mechanism: mechanismOf(f.mechanism), result: "refused", reason: authReason(f.reason) });
      case "queued":
        return void this.accepted.inc({ listener: f.via === "local" ? "local" : listener });
      case "mail-refused":
        return void this.refused.inc({ stage: "mail", reason: refusalCode(f) });
      case "rcpt-refused":
        return void this.refused.inc({ stage: "rcpt", reason: refusalCode(f) });
      case "data-refused":
        return void this.refused.inc({ stage: "data", reason: refusalCode(f) });
      case "delivered":
      case "deferred":
      case "failed":
      case "expired":
        return void this.deliveries.inc({ outcome: f.event });
      case "limit":
        return void this.limitHits.inc({ limit: limitOf(f.limit) });
      case "reload":
        return void this.reloads.inc({ result: f.ok === false ? "failed" : "ok" });
    }
  };
}
