/**
 * The session's contracts: its settings, the ports it asks the world through, and its outputs.
 */
import type { Reply } from "./reply.js";
import type { MailPath } from "./address.js";
import type { SaslServerMechanism } from "../sasl/types.js";
import type { Decision } from "../base/decision.js";
import type { ListenerMode } from "../base/listener-mode.js";
import type { InfoWarnLog } from "../base/log.js";
import type { NewEnvelope, SpoolWriter } from "../queue/types.js";
import type { ContentStep } from "./content-steps.js";

export interface SessionSettings {
  hostname: string;
  banner: string;
  mode: ListenerMode;
  /** STARTTLS can be offered (a certificate is loaded and the connection is not TLS yet). */
  tlsAvailable: boolean;
  /** AUTH is enabled on this listener (always for submission modes). */
  authEnabled: boolean;
  /** Admin explicitly allowed AUTH (and submission) before TLS on this listener. */
  authWithoutTls: boolean;
  /** Offer REQUIRETLS once the session is TLS (RFC 8689 §2); absent: offered. */
  requireTls?: boolean;
  limits: {
    commandLineLength: number;
    authLineLength: number;
    textLineLength: number;
    recipients: number;
    messageSize: number;
    errors: number;
    junkCommands: number;
    authFailures: number;
    authFailureDelayMs: number;
    headerBytes: number;
    maxReceivedHeaders: number;
  };
  bareLineEnds: "reject" | "normalize";
  /** Where "RCPT TO:<Postmaster>" goes: postmaster@<first local domain>. */
  postmaster: string;
}

export interface ConnectionFacts {
  remoteIp: string;
  /** Set when the connection is (now) encrypted. */
  tls?: { version: string; cipher: string };
}

export interface SenderAccount {
  address: string;
  senders: readonly string[];
  /** A mail server or application relaying for its domains (src/policy/sender.ts). */
  relayClient?: boolean;
}

/** Everything the session asks of the world. */
export interface SessionPorts {
  /** Mechanisms offered right now (already filtered by the store's abilities and config). */
  mechanisms(): string[];
  createMechanism(name: string): SaslServerMechanism | null;
  /** The account behind an authenticated login (for sender checks). */
  account(login: string): Promise<SenderAccount | null>;
  checkSender(ctx: PolicyContext, sender: MailPath, account: SenderAccount | null): Promise<Decision>;
  /** May include `address`: the mailbox's own spelling, used in the envelope from then on. */
  checkRecipient(ctx: PolicyContext, rcpt: MailPath): Promise<Decision & { address?: string }>;
  /** `sender`: the transaction's MAIL FROM ("" for the null sender), which the rules depend on. */
  checkFromHeader(account: SenderAccount, from: string | undefined, sender: string): Decision;
  /**
   * Is this client's MAIL FROM vouched for (authenticated, or mynetworks on port 25)? Recorded in
   * the envelope for the bounce generator (docs/SECURITY.md 11.3). Absent: authenticated only.
   */
  senderVouched?(ctx: PolicyContext): boolean;
  openSpool(): Promise<SpoolWriter>;
  /** Steps each message passes before its commit (content-steps.ts); absent or empty: none. */
  contentSteps?(): readonly ContentStep[];
  /** Called after a successful commit, before 250 is sent. */
  queued(id: string, envelope: NewEnvelope): void;
  delay(ms: number): Promise<void>;
  log: InfoWarnLog;
  now(): Date;
  /** Password-guessing defence for this connection (absent: none, as in unit tests). */
  authGuard?: AuthGuard;
  /** Per-user sending limits (absent: none). */
  sendLimits?: SendLimitsPort;
}

/**
 * Cross-connection AUTH throttling, as the exchange sees it (src/policy/auth-throttle.ts). A promise
 * when the counters are cluster-wide (PostgreSQL); it never rejects.
 */
export interface AuthGuard {
  /** Before an AUTH starts: a reason to refuse it (454 4.7.0), or null. */
  refusal(): string | null | Promise<string | null>;
  /** After a failed exchange: the penalty delay (ms) to add to authFailureDelayMs. */
  failed(): number | Promise<number>;
  succeeded(user: string): void | Promise<void>;
}

/** Per-user sending limits (src/policy/send-limits.ts); promises when cluster-wide, never rejecting. */
export interface SendLimitsPort {
  checkMessage(user: string): Decision | Promise<Decision>;
  /** `pending`: recipients already accepted in this transaction. */
  checkRecipient(user: string, pending: number): Decision | Promise<Decision>;
  sent(user: string, recipients: number): void | Promise<void>;
}

export interface PolicyContext {
  ip: string;
  mode: ListenerMode;
  authUser?: string;
  /** The EHLO/HELO name (SPF's HELO identity and %{h}, RFC 7208 §2.3). */
  helo?: string;
}

export type SessionAction = "close" | "starttls";

export interface SessionOutput {
  replies: Reply[];
  action?: SessionAction;
}

/** What the connection should read next, and with which line limit. */
/** "chunk": the octets of a BDAT chunk (RFC 3030), exactly Session.chunkRemaining of them. */
export type Expecting = "command" | "auth-response" | "data" | "chunk";
