/**
 * inbound.spfRejectFail: MAIL from a client that is neither authenticated nor in mynetworks is
 * refused when the sender domain's SPF record says "fail" (-all) for the client's address
 * (RFC 7208 §8.4: a receiver may reject; RFC 7372 §3.2: 550 5.7.23). Softfail, neutral, none and
 * errors are accepted: they go into the Authentication-Results field (src/inbound) instead.
 */
import { ALLOW, deny, type Decision } from "../base/decision.js";
import { reply } from "../base/reply.js";
import { C550MailboxUnavail, Se5723SpfFail } from "../base/reply-codes.js";
import type { MailPath } from "../smtp/address.js";
import type { PolicyContext } from "../smtp/session-types.js";

export interface SpfAtMailSetup {
  /** SPF for the MAIL FROM identity (postmaster@HELO for the null sender); null: nothing to check. */
  check(q: { ip: string; helo: string; sender: string }): Promise<{ result: string; domain: string } | null>;
  /** Authenticated, or mynetworks on port 25 (relay.mayRelay): never refused here. */
  trusted(ctx: PolicyContext): boolean;
}

export async function checkSpfAtMail(setup: SpfAtMailSetup, ctx: PolicyContext, sender: MailPath): Promise<Decision> {
  if (ctx.mode !== "mta" || setup.trusted(ctx)) return ALLOW;
  let outcome: { result: string; domain: string } | null;
  try {
    outcome = await setup.check({ ip: ctx.ip, helo: ctx.helo ?? "", sender: sender.address });
  } catch {
    return ALLOW; // an error is no "fail"
  }
  if (outcome?.result !== "fail") return ALLOW;
  return deny(
    reply(
      C550MailboxUnavail,
      Se5723SpfFail,
      `<${sender.address || `postmaster@${ctx.helo ?? ""}`}>: SPF validation failed: ${outcome.domain} does not designate ${ctx.ip} as permitted sender`,
    ),
    `SPF fail for ${outcome.domain}`,
  );
}
