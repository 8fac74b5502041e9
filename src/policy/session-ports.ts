/**
 * The policy members of a session's ports (AUTH offer and guard, sender, recipient and From:
 * checks, sending limits), built by one factory for the server (src/server/server.ts) and for the
 * unit harness (test/smtp/session-helpers.ts), so unit tests run the production rules.
 */
import { randomBytes } from "node:crypto";
import { policyRefusal } from "../base/reply-codes.js";
import type { MailPath } from "../smtp/address.js";
import type { PolicyContext, SenderAccount, SessionPorts } from "../smtp/session-types.js";
import type { CredentialVerifier, SaslServerMechanism, SaslServerOptions } from "../sasl/types.js";
import type { AuthThrottlePort } from "./auth-throttle.js";
import { guardConnection } from "./auth-guard.js";
import { authzidRule } from "./authzid.js";
import { ALLOW, deny, type Decision } from "../base/decision.js";
import type { RelayPolicy } from "./relay.js";
import { checkEnvelopeSender, checkFromHeader } from "./sender.js";
import { checkSpfAtMail, type SpfAtMailSetup } from "./spf-at-mail.js";
import type { InfoWarnLog } from "../base/log.js";

/** What the credential backends offer (src/auth/backends.ts AuthBackends; a test store in tests). */
export interface AuthSource {
  /** Routes each lookup to the login's backend. */
  readonly verifier: CredentialVerifier;
  /** Offered right now, strongest first; SCRAM -PLUS only when `channelBound` (TLS 1.3). */
  mechanisms(channelBound?: boolean): string[];
  /** `context.login` hears each login a passed-through exchange names (throws to refuse it). */
  createMechanism(
    name: string,
    context: { remoteIp?: string; login?(user: string): void | Promise<void> },
    sasl: Omit<SaslServerOptions, "verifier">,
    verifier?: CredentialVerifier,
  ): SaslServerMechanism | null;
  /** The account behind a login that authenticated. */
  account(login: string): Promise<SenderAccount | null>;
}

export interface PolicySetup {
  relay: RelayPolicy;
  auth: AuthSource;
  /** Our host name: CRAM-MD5 challenges, the DIGEST-MD5 realm. */
  hostname: string;
  /** Logins that may act as any authzid (smtp.authzidAdmins). */
  authzidAdmins: readonly string[];
  /** The cross-connection AUTH throttle. Absent: no guard (unit tests that count plain delays). */
  throttle?: AuthThrottlePort;
  /** auth.throttle.lockoutSec, for the lockout log line. */
  lockoutSec?: number;
  sendLimits?: SessionPorts["sendLimits"];
  /** aliases.recipientDelimiter: sender ownership takes "john+x" as john's with the aliases' separator. Default "+". */
  recipientDelimiter?: string;
  /** Key for faked SCRAM salts (docs/SECURITY.md 11.4). Default: random, one per setup. */
  fakeSaltKey?: Buffer;
  /** inbound.spfRejectFail: the SPF check run at MAIL (spf-at-mail.ts); absent: none. */
  spfAtMail?: SpfAtMailSetup["check"];
}

export type PolicyPorts = Pick<
  SessionPorts,
  "mechanisms" | "createMechanism" | "account" | "authGuard" | "sendLimits" | "checkSender" | "checkRecipient" | "checkFromHeader" | "senderVouched"
>;

/** The connection a session's policy ports serve. */
export interface PolicyConnection {
  remoteIp: string;
  log: InfoWarnLog;
  /** The connection's RFC 9266 tls-exporter data; null until TLS 1.3 (then SCRAM -PLUS is offered). */
  channelBinding?: () => Buffer | null;
}

/**
 * MAIL FROM for a session: an unauthenticated client is judged at RCPT (relay) instead; an
 * authenticated login must own the sender. Fail closed: a login that has no account owns no address.
 */
export async function checkSessionSender(ctx: PolicyContext, sender: MailPath, account: SenderAccount | null, delimiter?: string): Promise<Decision> {
  if (ctx.authUser === undefined) return ALLOW;
  if (!account) return deny(policyRefusal(553, "Sender address rejected: login has no mailbox"), "login has no account");
  return checkEnvelopeSender(account, sender.address, delimiter);
}

/** Built once per server; the returned function gives each connection its ports. */
export function createPolicyPorts(setup: PolicySetup): (conn: PolicyConnection) => PolicyPorts {
  const { relay, auth, throttle } = setup;
  const fakeSaltKey = setup.fakeSaltKey ?? randomBytes(32);
  const sasl = { hostname: setup.hostname, authzidAllowed: authzidRule(setup.authzidAdmins), fakeSaltKey };
  return ({ remoteIp, log, channelBinding }) => {
    const connSasl = channelBinding ? { ...sasl, channelBinding } : sasl;
    const guard = throttle
      ? guardConnection(throttle, remoteIp, auth.verifier, (scope, user) =>
          log.warn({ event: "auth-throttled", ip: remoteIp, scope, user, lockoutSec: setup.lockoutSec }, "AUTH throttled: too many failures"),
        )
      : undefined;
    return {
      mechanisms: () => auth.mechanisms(channelBinding?.() != null),
      createMechanism: (name) =>
        auth.createMechanism(name, guard ? { remoteIp, login: guard.login } : { remoteIp }, connSasl, guard?.verifier ?? auth.verifier),
      account: (login) => auth.account(login),
      ...(guard ? { authGuard: guard.authGuard } : {}),
      ...(setup.sendLimits ? { sendLimits: setup.sendLimits } : {}),
      checkSender: async (ctx, sender, account) => {
        const decision = await checkSessionSender(ctx, sender, account, setup.recipientDelimiter);
        if (!decision.allow || !setup.spfAtMail) return decision;
        return checkSpfAtMail({ check: setup.spfAtMail, trusted: (c) => relay.mayRelay(c).allowed }, ctx, sender);
      },
      checkRecipient: (ctx, rcpt) => relay.checkRecipient(ctx, rcpt),
      checkFromHeader: (account, from, sender) => checkFromHeader(account, from, sender, setup.recipientDelimiter),
      // Authenticated, or mynetworks on port 25: the same test as relaying (docs/SECURITY.md 11.3).
      senderVouched: (ctx) => relay.mayRelay(ctx).allowed,
    };
  };
}
