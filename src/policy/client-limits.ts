/**
 * Per-client throttles decided in one place (DESIGN: policy owns throttles): concurrent
 * connections in total and per client IP, the connection rate per IP (Postfix anvil), and the
 * tarpit delay for clients that keep making errors. No I/O: the clock is injected, the listener
 * layer asks and carries out the answer.
 *
 * "Per IP" is per `clientKey`: an IPv4 address, or an IPv6 /64 (a client rotating through the
 * addresses of its /64 is still one client); IPv4-mapped IPv6 counts as the IPv4 address.
 */
import { closingReply, Se470Security } from "../base/reply-codes.js";
import type { Reply } from "../base/reply.js";
import { NetworkList } from "./networks.js";
import { clientKey } from "./auth-throttle.js";

export interface ClientLimitsConfig {
  /** All concurrent connections (exempt clients included). */
  total: number;
  /** Concurrent connections from one client IP (Postfix smtpd_client_connection_count_limit = 50). */
  perIp: number;
  /** Connection attempts from one IP per window; 0 = off (Postfix smtpd_client_connection_rate_limit). */
  ratePerIp: number;
  /** The rate window (Postfix anvil_rate_time_unit = 60 s). */
  rateWindowSec: number;
  /** CIDRs that skip per-IP limits and penalties (Postfix smtpd_client_event_limit_exceptions). */
  exempt: readonly string[];
}

export interface TarpitConfig {
  /** Errors a client may make before every further error reply is delayed (smtpd_soft_error_limit). */
  softErrors: number;
  /** Junk commands (NOOP, RSET, VRFY, HELP...) before they are delayed too. */
  softJunk: number;
  /** The delay grows by this much per error past the soft limit (smtpd_error_sleep_time). */
  stepMs: number;
  maxDelayMs: number;
}

export type RefusalReason = "total" | "per-ip" | "rate";

export type Admission = { ok: true; exempt: boolean; release(): void } | { ok: false; reason: RefusalReason; reply: Reply };

/** Counters for logs and metrics (issue 7 reads these through RunningServer.limits()). */
export interface LimitsSnapshot {
  connections: number;
  /** Distinct clients (IPv4 addresses, IPv6 /64s) with at least one open connection. */
  clients: number;
  admitted: number;
  refused: Record<RefusalReason, number>;
  /** Connections ended by a per-connection limit, by limit name (session-lifetime, data-rate, ...). */
  ended: Record<string, number>;
}

/**
 * What one process tells the others when several serve the same listeners (src/server/workers.ts):
 * a counted connection attempt (the rate), and a connection opened or closed, per client key.
 */
export type ClientLimitsChange = { kind: "attempt" | "open" | "close"; client: string };

interface RateWindow {
  start: number;
  count: number;
}

export class ClientLimits {
  private exempt: NetworkList = new NetworkList([]);
  private exemptSource: readonly string[] | null = null;
  private readonly perIp = new Map<string, number>();
  private readonly rates = new Map<string, RateWindow>();
  private open = 0;
  private admitted = 0;
  private readonly refused: Record<RefusalReason, number> = { total: 0, "per-ip": 0, rate: 0 };
  private readonly ended: Record<string, number> = {};
  private version = 0;
  /** The other processes' open connections, per process, per client (their caps are the same). */
  private readonly peers = new Map<string, Map<string, number>>();
  private peerOpen = 0;
  /** Told of this process's own changes, for the other processes (shared-limits.ts). */
  onChange?: (change: ClientLimitsChange) => void;

  /** A function for config: read at every decision, so a reload (SIGHUP) reaches the limits at once. */
  constructor(
    private readonly source: ClientLimitsConfig | (() => ClientLimitsConfig),
    private readonly hostname: string,
    private readonly now: () => number = Date.now,
  ) {}

  private get config(): ClientLimitsConfig {
    return typeof this.source === "function" ? this.source() : this.source;
  }

  isExempt(ip: string): boolean {
    const list = this.config.exempt;
    if (list !== this.exemptSource) {
      this.exempt = new NetworkList(list);
      this.exemptSource = list;
    }
    return this.exempt.contains(ip);
  }

  /** Asks for a connection slot. An admitted connection must call release() exactly once (extra calls are ignored). */
  admit(ip: string): Admission {
    const exempt = this.isExempt(ip);
    const client = clientKey(ip);
    if (this.open + this.peerOpen >= this.config.total) return this.refuse("total", `${this.hostname} Error: too many connections`);
    if (!exempt && this.config.ratePerIp > 0) {
      this.onChange?.({ kind: "attempt", client });
      if (this.countAttempt(client) > this.config.ratePerIp) {
        return this.refuse("rate", `${this.hostname} Error: too many connections from your IP address; try again later`);
      }
    }
    const mine = this.perIp.get(client) ?? 0;
    if (!exempt && mine + this.peerCount(client) >= this.config.perIp) {
      return this.refuse("per-ip", `${this.hostname} Error: too many connections from your IP address`);
    }
    this.perIp.set(client, mine + 1);
    this.open++;
    this.admitted++;
    this.version++;
    this.onChange?.({ kind: "open", client });
    let released = false;
    return {
      ok: true,
      exempt,
      release: () => {
        if (released) return;
        released = true;
        this.open--;
        const left = (this.perIp.get(client) ?? 1) - 1;
        if (left > 0) this.perIp.set(client, left);
        else this.perIp.delete(client);
        this.version++;
        this.onChange?.({ kind: "close", client });
      },
    };
  }

  /** A per-connection limit ended a connection (counted for the log line and metrics). */
  countEnded(limit: string): void {
    this.ended[limit] = (this.ended[limit] ?? 0) + 1;
    this.version++;
  }

  /** Changes whenever a counter changes: the periodic log line is written only when it moved. */
  get changeCount(): number {
    return this.version;
  }

  snapshot(): LimitsSnapshot {
    return {
      connections: this.open,
      clients: this.perIp.size,
      admitted: this.admitted,
      refused: { ...this.refused },
      ended: { ...this.ended },
    };
  }

  /** Another process's change (`peer` names it): its connections count against the same caps. */
  peerChanged(peer: string, change: ClientLimitsChange): void {
    if (change.kind === "attempt") return void this.countAttempt(change.client);
    let counts = this.peers.get(peer);
    if (!counts) this.peers.set(peer, (counts = new Map()));
    const n = (counts.get(change.client) ?? 0) + (change.kind === "open" ? 1 : -1);
    if (n < 0) return; // a close whose open came before this process started
    this.peerOpen += change.kind === "open" ? 1 : -1;
    if (n > 0) counts.set(change.client, n);
    else counts.delete(change.client);
  }

  /** A process that ended: its connections are gone with it. */
  peerGone(peer: string): void {
    const counts = this.peers.get(peer);
    if (!counts) return;
    for (const n of counts.values()) this.peerOpen -= n;
    this.peers.delete(peer);
  }

  private peerCount(client: string): number {
    let n = 0;
    for (const counts of this.peers.values()) n += counts.get(client) ?? 0;
    return n;
  }

  /** Fixed windows per client, like Postfix's anvil: every attempt counts, refused ones too. */
  private countAttempt(ip: string): number {
    const now = this.now();
    const windowMs = this.config.rateWindowSec * 1000;
    let w = this.rates.get(ip);
    if (!w || now - w.start >= windowMs) {
      if (this.rates.size > 10_000) this.sweep(now, windowMs);
      w = { start: now, count: 0 };
      this.rates.set(ip, w);
    }
    w.count++;
    return w.count;
  }

  private sweep(now: number, windowMs: number): void {
    for (const [ip, w] of this.rates) if (now - w.start >= windowMs) this.rates.delete(ip);
  }

  private refuse(reason: RefusalReason, text: string): Admission {
    this.refused[reason]++;
    this.version++;
    // RFC 5321 §3.1 / §4.2.2: 421 and close; RFC 3463 4.7.0 (security or policy status).
    return { ok: false, reason, reply: closingReply(Se470Security, text) };
  }
}

/**
 * The tarpit: no delay while a client stays under the soft limit; past it every further error
 * (or junk command) waits a little longer, up to maxDelayMs (Postfix smtpd_soft_error_limit and
 * smtpd_error_sleep_time). The hard limits (limits.errors, limits.junkCommands) still close.
 */
export function tarpitDelayMs(count: number, softLimit: number, t: TarpitConfig): number {
  return Math.min(t.maxDelayMs, Math.max(0, count - softLimit + 1) * t.stepMs);
}
