/**
 * One SMTP AUTH exchange at a time (RFC 4954): picks a fresh mechanism object per attempt, turns
 * its steps into 334/235/535 replies, slows failures down and counts them. The session decides
 * *whether* AUTH may start; this decides how it goes.
 */
import { reply, type Reply } from "./reply.js";
import { decodeBase64Strict } from "./base64.js";
import type { SaslServerMechanism, SaslServerStep, SaslFailureReason } from "../sasl/types.js";
import type { SessionOutput, SessionPorts, SessionSettings } from "./session-types.js";

export interface AuthResult {
  output: SessionOutput;
  /** Set on success: the authorization identity as the mechanism returned it. */
  user?: string;
}

export class AuthExchange {
  private mechanism: SaslServerMechanism | null = null;
  private failures = 0;

  constructor(
    private readonly settings: SessionSettings,
    private readonly ports: SessionPorts,
    private readonly closing: (text: string) => Reply,
  ) {}

  /** An exchange is waiting for the client's next response. */
  get active(): boolean {
    return this.mechanism !== null;
  }

  /** Forget an exchange in progress (TLS started, line error, connection gone). */
  cancel(): void {
    this.mechanism = null;
  }

  async begin(mechanismName: string, initial: string | undefined): Promise<AuthResult> {
    const name = mechanismName.toUpperCase();
    // SECURITY.md rule 12: a fresh mechanism object per attempt, only among those offered.
    const mechanism = this.ports.mechanisms().includes(name) ? this.ports.createMechanism(name) : null;
    if (!mechanism) {
      this.ports.log.warn({ event: "auth-failure", mechanism: name, reason: "mechanism-not-allowed" }, "AUTH failed");
      return { output: { replies: [reply(504, "5.5.4", "Unrecognized authentication type")] } };
    }
    // SECURITY.md rule 13: an IP (or account) past its failure budget is refused before any work.
    const refusal = this.ports.authGuard?.refusal();
    if (refusal) {
      this.failures++;
      this.ports.log.warn({ event: "auth-refused", mechanism: name, reason: "throttled", detail: refusal }, "AUTH refused");
      const refused = reply(454, "4.7.0", "Temporary authentication failure");
      if (this.failures >= this.settings.limits.authFailures) {
        return { output: { replies: [refused, this.closing("Error: too many authentication failures")], action: "close" } };
      }
      return { output: { replies: [refused] } };
    }
    let decoded: Buffer | null = null;
    if (initial !== undefined) {
      if (initial === "*") return { output: { replies: [reply(501, "5.7.0", "Authentication cancelled")] } };
      // RFC 4954 §4: "=" is an empty initial response.
      decoded = initial === "=" ? Buffer.alloc(0) : decodeBase64Strict(initial);
      if (decoded === null) return { output: { replies: [reply(501, "5.5.2", "Error: invalid base64 data")] } };
    }
    this.mechanism = mechanism;
    return this.step(mechanism, await safeStep(() => mechanism.start(decoded)));
  }

  async respond(line: Buffer): Promise<AuthResult> {
    const mechanism = this.mechanism!;
    const text = line.toString("latin1");
    if (text === "*") {
      this.mechanism = null;
      this.ports.log.info({ event: "auth-cancelled", mechanism: mechanism.name }, "AUTH cancelled by client");
      return { output: { replies: [reply(501, "5.7.0", "Authentication cancelled")] } };
    }
    const decoded = decodeBase64Strict(text);
    if (decoded === null) {
      this.mechanism = null;
      return { output: { replies: [reply(501, "5.5.2", "Error: invalid base64 data")] } };
    }
    return this.step(mechanism, await safeStep(() => mechanism.step(decoded)));
  }

  private async step(mechanism: SaslServerMechanism, step: SaslServerStep): Promise<AuthResult> {
    if (step.kind === "challenge") return { output: { replies: [reply(334, undefined, step.data.toString("base64"))] } };
    this.mechanism = null;
    if (step.kind === "success") {
      this.ports.log.info(
        { event: "auth-success", mechanism: mechanism.name, user: step.identity.authzid, authcid: step.identity.authcid },
        "AUTH succeeded",
      );
      this.ports.authGuard?.succeeded(step.identity.authcid);
      return { output: { replies: [reply(235, "2.7.0", "Authentication successful")] }, user: step.identity.authzid };
    }
    return { output: await this.failed(mechanism.name, step.reason, step.detail) };
  }

  private async failed(mechanism: string, reason: SaslFailureReason, detail?: string): Promise<SessionOutput> {
    this.failures++;
    // The log says why; the client only learns that it failed (SECURITY.md rule 14).
    this.ports.log.warn({ event: "auth-failure", mechanism, reason, detail, failures: this.failures }, "AUTH failed");
    if (reason === "malformed") return { replies: [reply(501, "5.5.2", "Error: malformed authentication response")] };
    // Answer failures late (Dovecot's auth_failure_delay), later still for an IP that keeps
    // failing (the guard's growing penalty): guessing gets slow. Unknown users wait the same.
    const penaltyMs = this.ports.authGuard?.failed() ?? 0;
    await this.ports.delay(this.settings.limits.authFailureDelayMs + penaltyMs);
    const r =
      reason === "backend-error"
        ? reply(454, "4.7.0", "Temporary authentication failure")
        : reply(535, "5.7.8", "Authentication credentials invalid");
    // RFC 4954 §4: a server may close after repeated failures (not before 3).
    if (this.failures >= this.settings.limits.authFailures) {
      this.ports.log.warn({ event: "limit", limit: "authFailures", count: this.failures }, "too many AUTH failures");
      return { replies: [r, this.closing("Error: too many authentication failures")], action: "close" };
    }
    return { replies: [r] };
  }
}

async function safeStep(step: () => Promise<SaslServerStep>): Promise<SaslServerStep> {
  try {
    return await step();
  } catch (err) {
    return { kind: "failure", reason: "backend-error", detail: String(err) };
  }
}
