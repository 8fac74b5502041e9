/**
 * One SMTP AUTH exchange at a time (RFC 4954): picks a fresh mechanism object per attempt, turns
 * its steps into 334/235/535 replies, slows failures down and counts them in the session's error
 * budget. The session decides *whether* AUTH may start; this decides how it goes.
 */
import { reply, type Reply } from "./reply.js";
import { decodeBase64Strict } from "./base64.js";
import type { SaslServerMechanism, SaslServerStep, SaslFailureReason } from "../sasl/types.js";
import { ErrorBudget } from "./error-budget.js";
import type { SessionOutput, SessionPorts, SessionSettings } from "./session-types.js";

export interface AuthResult {
  output: SessionOutput;
  /** Set on success: the authorization identity as the mechanism returned it. */
  user?: string;
}

/** One exchange in progress: its mechanism, and whether it has already been counted and ended. */
interface Exchange {
  mechanism: SaslServerMechanism;
  ended: boolean;
}

export class AuthExchange {
  private exchange: Exchange | null = null;

  constructor(
    private readonly settings: SessionSettings,
    private readonly ports: SessionPorts,
    private readonly closing: (text: string) => Reply,
    /** Where failures are counted (the session's, shared with its other limits). */
    private readonly budget: ErrorBudget = new ErrorBudget(settings.limits),
  ) {}

  /** An exchange is waiting for the client's next response. */
  get active(): boolean {
    return this.exchange !== null;
  }

  /**
   * Forget an exchange in progress (TLS started, line error, connection gone). One cut off after
   * the server answered a login (a SCRAM salt) counts as a failure for the guessing counters, or
   * walking away after the salt would enumerate logins for free (docs/SECURITY.md 11.4).
   */
  cancel(): void {
    const exchange = this.exchange;
    this.exchange = null;
    if (exchange && !exchange.ended) this.unfinished(exchange, "abandoned");
  }

  async begin(mechanismName: string, initial: string | undefined): Promise<AuthResult> {
    const started = this.clock();
    const name = mechanismName.toUpperCase();
    // SECURITY.md rule 12: a fresh mechanism object per attempt, only among those offered.
    const mechanism = this.ports.mechanisms().includes(name) ? this.ports.createMechanism(name) : null;
    if (!mechanism) {
      this.ports.log.warn({ event: "auth-failure", mechanism: name, reason: "mechanism-not-allowed" }, "AUTH failed");
      return { output: { replies: [reply(504, "5.5.4", "Unrecognized authentication type")] } };
    }
    // SECURITY.md rule 13: an IP (or account) past its failure budget is refused before any work.
    const refusal = await this.ports.authGuard?.refusal();
    if (refusal) {
      const spent = this.budget.chargeAuthFailure();
      this.ports.log.warn({ event: "auth-refused", mechanism: name, reason: "throttled", detail: refusal }, "AUTH refused");
      const refused = reply(454, "4.7.0", "Temporary authentication failure");
      if (spent) {
        return { output: { replies: [refused, this.closing("Error: too many authentication failures")], action: "close" } };
      }
      return { output: { replies: [refused] } };
    }
    const exchange: Exchange = { mechanism, ended: false };
    let decoded: Buffer | null = null;
    if (initial !== undefined) {
      if (initial === "*") return { output: this.unfinished(exchange, "cancelled") };
      // RFC 4954 §4: "=" is an empty initial response.
      decoded = initial === "=" ? Buffer.alloc(0) : decodeBase64Strict(initial);
      if (decoded === null) return { output: this.unfinished(exchange, "malformed", reply(501, "5.5.2", "Error: invalid base64 data")) };
    }
    this.exchange = exchange;
    return this.step(exchange, started, await safeStep(() => mechanism.start(decoded)));
  }

  async respond(line: Buffer): Promise<AuthResult> {
    const started = this.clock();
    const exchange = this.exchange!;
    const text = line.toString("latin1");
    if (text === "*") {
      this.exchange = null;
      return { output: this.unfinished(exchange, "cancelled") };
    }
    const decoded = decodeBase64Strict(text);
    if (decoded === null) {
      this.exchange = null;
      return { output: this.unfinished(exchange, "malformed", reply(501, "5.5.2", "Error: invalid base64 data")) };
    }
    return this.step(exchange, started, await safeStep(() => exchange.mechanism.step(decoded)));
  }

  private async step(exchange: Exchange, started: number, step: SaslServerStep): Promise<AuthResult> {
    // Cut off while the mechanism worked (the connection went away): already counted by cancel().
    if (exchange.ended) return { output: { replies: [] } };
    if (step.kind === "challenge") return { output: { replies: [reply(334, undefined, step.data.toString("base64"))] } };
    exchange.ended = true;
    if (this.exchange === exchange) this.exchange = null;
    const mechanism = exchange.mechanism;
    if (step.kind === "success") {
      const { authzid, authcid, credential } = step.identity;
      this.ports.log.info(
        { event: "auth-success", mechanism: mechanism.name, user: authzid, authcid, ...(credential ? { credential } : {}) },
        "AUTH succeeded",
      );
      void this.ports.authGuard?.succeeded(step.identity.authcid);
      return { output: { replies: [reply(235, "2.7.0", "Authentication successful")] }, user: step.identity.authzid };
    }
    if (step.reason === "malformed") {
      return { output: this.unfinished(exchange, "malformed", reply(501, "5.5.2", "Error: malformed authentication response"), step.detail) };
    }
    return { output: await this.failed(mechanism.name, started, step.reason, step.detail) };
  }

  /**
   * A failed exchange is answered at one deadline: `authFailureDelayMs` (plus the guard's penalty)
   * after the client's last message arrived, whatever the server spent meanwhile — a password hash,
   * a dummy hash, none at all (an unknown user of a backend without a decoy), or a hash shared with
   * a concurrent identical attempt. Only a check slower than the deadline answers later, at once.
   * Measured from the last message, not the AUTH command: a client pausing between LOGIN's steps
   * cannot spend the delay itself and then watch the hash (docs/SECURITY.md 11.5; Dovecot's
   * auth_failure_delay).
   */
  private async failed(mechanism: string, started: number, reason: SaslFailureReason, detail?: string): Promise<SessionOutput> {
    this.budget.chargeAuthFailure();
    // One reading of the clock: what the check cost and what is left to wait add up to the deadline.
    const now = this.clock();
    const checkMs = now - started;
    // Answer failures late, later still for an IP that keeps failing (the guard's growing penalty).
    const penaltyMs = (await this.ports.authGuard?.failed()) ?? 0;
    const waitMs = Math.max(0, started + this.settings.limits.authFailureDelayMs + penaltyMs - now);
    // The log says why (and what the check cost, what was left to wait); the client only learns
    // that it failed (SECURITY.md rule 14).
    this.ports.log.warn({ event: "auth-failure", mechanism, reason, detail, failures: this.budget.authFailures, checkMs, waitMs }, "AUTH failed");
    await this.ports.delay(waitMs);
    const r = reason === "backend-error" ? reply(454, "4.7.0", "Temporary authentication failure") : reply(535, "5.7.8", "Authentication credentials invalid");
    return this.afterFailure(r);
  }

  /**
   * Cancelled with "*", malformed, or cut off: no credentials were judged, so no delay and no
   * 535. It still counts for the guessing counters (per IP, per account), or a client could ask
   * for a login's SCRAM salt and walk away, login after login (docs/SECURITY.md 11.4). Only a
   * malformed message counts towards the per-connection close (a cancel is the client's right,
   * RFC 4954 §4).
   */
  private unfinished(exchange: Exchange, reason: "cancelled" | "malformed" | "abandoned", r?: Reply, detail?: string): SessionOutput {
    exchange.ended = true;
    if (reason === "malformed") this.budget.chargeAuthFailure();
    const fields = { event: "auth-failure", mechanism: exchange.mechanism.name, reason, detail, failures: this.budget.authFailures };
    if (reason === "cancelled") this.ports.log.info(fields, "AUTH cancelled by client");
    else this.ports.log.warn(fields, "AUTH failed");
    void this.ports.authGuard?.failed();
    return { replies: reason === "abandoned" ? [] : [r ?? reply(501, "5.7.0", "Authentication cancelled")] };
  }

  private afterFailure(r: Reply): SessionOutput {
    // RFC 4954 §4: a server may close after repeated failures (not before 3).
    if (this.budget.authFailuresSpent) {
      this.ports.log.warn({ event: "limit", limit: "authFailures", count: this.budget.authFailures }, "too many AUTH failures");
      return { replies: [r, this.closing("Error: too many authentication failures")], action: "close" };
    }
    return { replies: [r] };
  }

  private clock(): number {
    return this.ports.now().getTime();
  }
}

async function safeStep(step: () => Promise<SaslServerStep>): Promise<SaslServerStep> {
  try {
    return await step();
  } catch (err) {
    return { kind: "failure", reason: "backend-error", detail: String(err) };
  }
}
