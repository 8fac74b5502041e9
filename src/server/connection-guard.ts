/**
 * Per-connection abuse limits carried out beside the SMTP connection: the session lifetime, a
 * minimum DATA transfer rate, the number of commands before AUTH on submission ports, and the
 * tarpit delay. The session stays a pure state machine; this only watches time and counts.
 */
import type { ListenerMode } from "../base/listener-mode.js";
import { closingReply, Se442BadConnection, Se470Security } from "../base/reply-codes.js";
import type { Reply } from "../base/reply.js";
import type { Expecting, SessionOutput } from "../smtp/session-types.js";
import { tarpitDelayMs, type TarpitConfig } from "../policy/client-limits.js";
import type { Logger } from "./log.js";

export interface GuardConfig {
  hostname: string;
  mode: ListenerMode;
  /** Commands allowed before AUTH succeeds on submission ports; 0 = no limit. */
  unauthCommands: number;
  /** null for exempt clients: no penalty delays (the hard error limits still apply). */
  tarpit: TarpitConfig | null;
  /** Below bytesPerSec over any whole window of DATA: 421 4.4.2. bytesPerSec 0 = off. */
  minDataRate: { bytesPerSec: number; windowMs: number };
  /** 0 = no limit. */
  sessionLifetimeMs: number;
  log: Logger;
  /** Counts a connection ended by one of these limits (for the limits log line and metrics). */
  ended(limit: string): void;
}

export interface GuardedSession {
  readonly expecting: Expecting;
  readonly authenticatedUser: string | null;
  readonly penaltyCounts: { errors: number; junk: number };
}

export class ConnectionGuard {
  private lifetimeTimer: NodeJS.Timeout | null = null;
  private rateTimer: NodeJS.Timeout | null = null;
  private dataBytes = 0;
  private commandsBeforeAuth = 0;
  private last = { errors: 0, junk: 0 };
  private expire: (r: Reply) => void = () => undefined;

  constructor(private readonly config: GuardConfig) {}

  /** expire sends the reply and closes the connection. */
  start(expire: (r: Reply) => void): void {
    this.expire = expire;
    if (this.config.sessionLifetimeMs > 0) {
      this.lifetimeTimer = setTimeout(() => {
        // A deadline for the whole session, however busy it looks (slow drip of valid commands).
        this.end("session-lifetime", closingReply(Se442BadConnection, `${this.config.hostname} Error: session time limit exceeded`));
      }, this.config.sessionLifetimeMs);
      this.lifetimeTimer.unref();
    }
  }

  /** Before a command line (not an AUTH response) goes to the session; an output here ends the connection. */
  beforeCommand(session: GuardedSession): SessionOutput | null {
    const limit = this.config.unauthCommands;
    if (limit === 0 || this.config.mode === "mta" || session.authenticatedUser !== null) return null;
    if (++this.commandsBeforeAuth <= limit) return null;
    this.config.log.warn({ event: "limit", limit: "unauthCommands", count: limit }, "too many commands before AUTH");
    this.config.ended("unauth-commands");
    return { replies: [closingReply(Se470Security, `${this.config.hostname} Error: too many commands without authentication`)], action: "close" };
  }

  /** How long to hold the replies that just came out of the session (0 unless it made a new error or junk command). */
  penaltyMs(session: GuardedSession): number {
    const counts = session.penaltyCounts;
    const last = this.last;
    this.last = { ...counts };
    const t = this.config.tarpit;
    if (t === null) return 0;
    // Only the reply to a new error (or junk command) waits, by how far past its soft limit that counter is.
    const ms =
      counts.errors > last.errors ? tarpitDelayMs(counts.errors, t.softErrors, t) : counts.junk > last.junk ? tarpitDelayMs(counts.junk, t.softJunk, t) : 0;
    if (ms > 0) this.config.log.debug({ event: "tarpit", delayMs: ms, ...counts }, "delaying reply");
    return ms;
  }

  /** DATA's 354 went out: from now on the client must keep sending at the minimum rate. */
  dataStarted(): void {
    const { bytesPerSec, windowMs } = this.config.minDataRate;
    if (bytesPerSec === 0) return;
    this.dataBytes = 0;
    this.rateTimer = setInterval(() => {
      const rate = (this.dataBytes * 1000) / windowMs;
      this.dataBytes = 0;
      if (rate < bytesPerSec) {
        this.end("data-rate", closingReply(Se442BadConnection, `${this.config.hostname} Error: data transfer too slow`), { rate: Math.floor(rate) });
      }
    }, windowMs);
    this.rateTimer.unref();
  }

  dataEnded(): void {
    if (this.rateTimer) clearInterval(this.rateTimer);
    this.rateTimer = null;
  }

  received(bytes: number): void {
    if (this.rateTimer) this.dataBytes += bytes;
  }

  stop(): void {
    if (this.lifetimeTimer) clearTimeout(this.lifetimeTimer);
    this.lifetimeTimer = null;
    this.dataEnded();
  }

  private end(limit: string, r: Reply, fields: Record<string, unknown> = {}): void {
    this.stop();
    this.config.log.info({ event: "limit", limit, ...fields }, "connection ended by a limit");
    this.config.ended(limit);
    this.expire(r);
  }
}
