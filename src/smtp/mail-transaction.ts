/**
 * MAIL and RCPT once the session's phase allows them: their parameters, the policy's word on
 * sender and recipients, and the envelope they build (RFC 5321 §3.3). The session decides
 * *whether* the verb may run now (src/smtp/session-phase.ts); this decides what it does.
 */
import { reply, type Reply } from "./reply.js";
import { parseMailParams, parseRcptParams, parsePath } from "./address.js";
import { refusal } from "./refusals.js";
import type { Transaction } from "./message-intake.js";
import type { PolicyContext, SessionPorts, SessionSettings } from "./session-types.js";

/** What MAIL and RCPT read of the session. */
export interface EnvelopeContext {
  settings: SessionSettings;
  ports: SessionPorts;
  policy: PolicyContext;
  /** Over TLS (or allowed without it, authWithoutTls). */
  tls: boolean;
  /** EHLO rather than HELO: the service extensions' parameters are allowed. */
  esmtp: boolean;
  /** AUTH is still offered: MAIL's AUTH= parameter is allowed then too. */
  authOffered: boolean;
  /** EHLO listed REQUIRETLS (RFC 8689 §2): MAIL's REQUIRETLS parameter is allowed. */
  requireTlsOffered?: boolean;
}

/** RFC 6409 §4.3 / RFC 3207 §4: the submission ports take mail only over TLS and after AUTH. */
function submissionGate(ctx: EnvelopeContext): Reply | null {
  if (ctx.settings.mode === "mta") return null;
  if (!ctx.tls && !ctx.settings.authWithoutTls) return refusal("startTlsFirst");
  if (!ctx.policy.authUser) return refusal("authRequired");
  return null;
}

/** MAIL FROM: the new transaction, or the reply refusing it. */
export async function startTransaction(
  ctx: EnvelopeContext,
  pathText: string,
  paramText: string,
): Promise<{ tx: Transaction; reply: Reply } | { tx?: undefined; reply: Reply }> {
  const { settings, ports, policy, esmtp } = ctx;
  const authUser = policy.authUser;
  const gate = submissionGate(ctx);
  if (gate) {
    ports.log.info({ event: "mail-refused", reason: gate.lines[0] }, "MAIL refused");
    return { reply: gate };
  }
  const parsedParams = parseMailParams(paramText, {
    size: esmtp,
    eightBitMime: esmtp,
    smtputf8: esmtp,
    dsn: esmtp,
    // RFC 4954 §5: AUTH= stays valid after AUTH succeeded (when EHLO no longer lists AUTH).
    auth: esmtp && (authUser !== undefined || ctx.authOffered),
    // Not offered in clear, so refused there like any unknown parameter (555 5.5.4).
    requireTls: ctx.requireTlsOffered === true,
  });
  if (!parsedParams.ok) return { reply: parsedParams.reply };
  const params = parsedParams.value;
  const path = parsePath(pathText, { allowNull: true, allowUtf8: params.smtputf8 === true, role: "sender" });
  if (!path.ok) return { reply: path.reply };
  if (params.size !== undefined && params.size > settings.limits.messageSize) return { reply: refusal("sizeExceeded") }; // RFC 1870 §6.2
  const account = authUser ? await ports.account(authUser) : null;
  const limited = authUser ? await ports.sendLimits?.checkMessage(authUser) : undefined;
  const decision = limited && !limited.allow ? limited : await ports.checkSender(policy, path.path, account);
  if (!decision.allow) {
    ports.log.info({ event: "mail-refused", from: path.path.address, reason: decision.reason }, "MAIL refused");
    return { reply: decision.reply };
  }
  // Decided now, with the other sender checks, and kept in the envelope for the bounce generator.
  const senderVouched = ports.senderVouched ? ports.senderVouched(policy) : authUser !== undefined;
  ports.log.info({ event: "mail", from: path.path.address, size: params.size, requireTls: params.requireTls }, "MAIL accepted");
  return {
    tx: { sender: path.path, params, recipients: [], refusedRecipients: 0, account, senderVouched },
    reply: reply(250, "2.1.0", "Ok"),
  };
}

/** RCPT TO: adds the recipient to `tx` (once), or answers why not. */
export async function addRecipient(ctx: EnvelopeContext, tx: Transaction, pathText: string, paramText: string): Promise<Reply> {
  const { settings, ports, policy } = ctx;
  if (tx.recipients.length >= settings.limits.recipients) return refusal("tooManyRecipients"); // RFC 5321 §4.5.3.1.10
  const parsedParams = parseRcptParams(paramText, { dsn: ctx.esmtp });
  if (!parsedParams.ok) return parsedParams.reply;
  const path = parsePath(pathText, { allowNull: false, allowUtf8: tx.params.smtputf8 === true, role: "recipient" });
  if (!path.ok) return path.reply;
  const authUser = policy.authUser;
  const limited = authUser ? await ports.sendLimits?.checkRecipient(authUser, tx.recipients.length) : undefined;
  const decision = limited && !limited.allow ? limited : await ports.checkRecipient(policy, path.path);
  if (!decision.allow) {
    tx.refusedRecipients++;
    ports.log.info({ event: "rcpt-refused", from: tx.sender.address, to: path.path.address, reason: decision.reason }, "RCPT refused");
    return decision.reply;
  }
  // A bare "<Postmaster>" is delivered as the postmaster of our primary domain.
  const address = path.path.barePostmaster ? settings.postmaster : (decision.address ?? path.path.address);
  // Local parts are case-sensitive (RFC 5321 §2.4); the parser already lower-cased the domain.
  if (!tx.recipients.some((r) => r.address === address)) {
    tx.recipients.push({ address, notify: parsedParams.value.notify, orcpt: parsedParams.value.orcpt });
  }
  ports.log.info({ event: "rcpt", from: tx.sender.address, to: address, note: decision.note }, "RCPT accepted");
  return reply(250, "2.1.5", "Ok");
}
