/**
 * Per-user sending limits: messages and recipients per hour per authenticated login, so a stolen
 * password does not become a spam cannon. Sliding one-hour window; `450 4.7.1` when a limit is
 * reached (at MAIL for messages, at RCPT for recipients), logged by the session with the reason.
 * Counted when a message is queued. 0 turns a limit off. No I/O; the clock is injected.
 */
import { policyDeferral } from "../base/reply-codes.js";
import { ALLOW, deny, type Decision } from "../base/decision.js";

export interface SendLimitsConfig {
  messagesPerHour: number;
  recipientsPerHour: number;
}

const HOUR_MS = 3600_000;

/** At MAIL, with `messages` already sent this hour. */
export function messageLimitDecision(limit: number, messages: number): Decision {
  if (limit === 0 || messages < limit) return ALLOW;
  return deny(policyDeferral(`Error: message limit reached (${limit} per hour); try again later`), `send limit: ${limit} messages per hour`);
}

/** At RCPT, with `recipients` already sent to this hour and `pending` in this transaction. */
export function recipientLimitDecision(limit: number, recipients: number, pending: number): Decision {
  if (limit === 0 || recipients + pending < limit) return ALLOW;
  return deny(policyDeferral(`Error: recipient limit reached (${limit} per hour); try again later`), `send limit: ${limit} recipients per hour`);
}
/** Users tracked at most (the oldest are dropped first). */
const MAX_USERS = 100_000;

interface Usage {
  /** [time, recipients] per queued message within the window. */
  sent: [number, number][];
}

export class SendLimits {
  private readonly usage = new Map<string, Usage>();

  constructor(
    private readonly config: SendLimitsConfig,
    private readonly now: () => number = Date.now,
  ) {}

  private current(user: string): { messages: number; recipients: number } {
    const u = this.usage.get(user.toLowerCase());
    if (!u) return { messages: 0, recipients: 0 };
    const since = this.now() - HOUR_MS;
    u.sent = u.sent.filter(([t]) => t > since);
    return { messages: u.sent.length, recipients: u.sent.reduce((sum, [, n]) => sum + n, 0) };
  }

  /** At MAIL: may `user` start another message this hour? */
  checkMessage(user: string): Decision {
    const limit = this.config.messagesPerHour;
    return messageLimitDecision(limit, limit === 0 ? 0 : this.current(user).messages);
  }

  /** At RCPT: may `user` add one more recipient, with `pending` already in this transaction? */
  checkRecipient(user: string, pending: number): Decision {
    const limit = this.config.recipientsPerHour;
    return recipientLimitDecision(limit, limit === 0 ? 0 : this.current(user).recipients, pending);
  }

  /** A message from `user` was queued for `recipients` recipients. */
  sent(user: string, recipients: number): void {
    const key = user.toLowerCase();
    let u = this.usage.get(key);
    if (!u) {
      if (this.usage.size >= MAX_USERS) this.usage.delete(this.usage.keys().next().value!);
      this.usage.set(key, (u = { sent: [] }));
    }
    u.sent.push([this.now(), recipients]);
  }
}
