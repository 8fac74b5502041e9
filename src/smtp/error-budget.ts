/**
 * What one connection may get wrong before it is closed (DESIGN principle 5, SECURITY.md rule 3):
 * error replies, junk commands (RSET, NOOP, VRFY, EXPN, HELP) and failed AUTH attempts. One
 * object counts all three, so the session, the AUTH exchange and the connection's tarpit read
 * the same numbers.
 */
import type { Reply } from "./reply.js";
import { C421ServiceUnavail, Se453TooManyRcpts } from "../base/reply-codes.js";

export interface ErrorLimits {
  /** Error replies before 421 and close. */
  errors: number;
  /** Junk commands allowed; the one past this closes. */
  junkCommands: number;
  /** Failed AUTH attempts before 421 and close (RFC 4954 §4: not before 3). */
  authFailures: number;
}

/**
 * Does this reply count towards the errors limit? Any 4xx or 5xx but our closing 421 (RFC 5321
 * §3.8) and recipients past the limit, which are flow control: the client sends those in a later
 * transaction (RFC 5321 §4.5.3.1.10); counting them would end a pipelined transaction, and every
 * retry of it, with 421.
 */
export function isClientError(r: Reply): boolean {
  return r.code >= 400 && r.code !== C421ServiceUnavail && r.enhanced !== Se453TooManyRcpts;
}

export class ErrorBudget {
  private errors = 0;
  private junk = 0;
  private authFailureCount = 0;

  constructor(private readonly limits: ErrorLimits) {}

  /** Counts the client errors among one command's replies; true once the errors limit is reached. */
  chargeReplies(replies: readonly Reply[]): boolean {
    for (const r of replies) if (isClientError(r)) this.errors++;
    return this.errors >= this.limits.errors;
  }

  /** One more junk command; true once past the junkCommands limit. */
  chargeJunk(): boolean {
    return ++this.junk > this.limits.junkCommands;
  }

  /** One more failed (or malformed, or throttled) AUTH; true once the authFailures limit is reached. */
  chargeAuthFailure(): boolean {
    this.authFailureCount++;
    return this.authFailuresSpent;
  }

  get authFailuresSpent(): boolean {
    return this.authFailureCount >= this.limits.authFailures;
  }

  get authFailures(): number {
    return this.authFailureCount;
  }

  /** Errors and junk commands so far (the connection layer's tarpit reads them). */
  get counts(): { errors: number; junk: number } {
    return { errors: this.errors, junk: this.junk };
  }

  /** A message was queued: earlier errors and junk commands are forgiven (as Postfix's smtpd does); AUTH failures are not. */
  forgive(): void {
    this.errors = 0;
    this.junk = 0;
  }
}
