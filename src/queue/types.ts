/**
 * The envelope stored beside each spooled message. Written only by JSON.stringify
 * (SECURITY.md rule 17: no hand-built queue records).
 */
import type { Readable } from "node:stream";
import type { ListenerMode } from "../base/listener-mode.js";
import type { TlsPolicyName } from "../delivery/tls-policy/types.js";

export type DsnNotify = "NEVER" | "SUCCESS" | "FAILURE" | "DELAY";

export type RecipientStatus = "pending" | "delivered" | "failed";

export interface EnvelopeRecipient {
  /** Address as accepted at RCPT (domain lower-cased), e.g. "john@example.org". */
  address: string;
  /** DSN NOTIFY (RFC 3461 §4.1); absent when the client gave none. */
  notify?: DsnNotify[];
  /** DSN ORCPT (RFC 3461 §4.2), xtext already decoded. */
  orcpt?: { addrType: string; address: string };
  status: RecipientStatus;
  attempts: number;
  /** ISO time of the next attempt while pending. */
  nextAttemptAt?: string;
  /** Last reply or error seen for this recipient, for logs, `queue list` and bounces. */
  lastResult?: string;
  /** Host that gave lastResult (DSN Remote-MTA, RFC 3464 §2.3.5), when the deliverer knows it. */
  remoteMta?: string;
  /** The peer accepted it with DSN support, so it owns the success notice (RFC 3461 §6.2.2). */
  dsnPassedOn?: boolean;
  /** The outbound TLS policy of the last attempt (issue 15), shown by `postern queue show`. */
  tlsPolicy?: TlsPolicyName;
}

export interface ClientInfo {
  ip: string;
  /** HELO/EHLO argument as validated by the parser. */
  helo: string;
  listener: ListenerMode;
  authUser?: string;
  tls?: { version: string; cipher: string };
}

export interface Envelope {
  id: string;
  /** ISO time the message was accepted. */
  receivedAt: string;
  /** Reverse path; "" is the null sender (bounces). */
  mailFrom: string;
  body?: "7BIT" | "8BITMIME";
  smtputf8?: boolean;
  /** DSN RET and ENVID (RFC 3461 §4.3, §4.4). */
  ret?: "FULL" | "HDRS";
  envid?: string;
  /** Size of the spooled message file in octets (headerPrefix not counted). */
  size: number;
  /**
   * Header lines that go on top of the message, CRLF-terminated, e.g. a DKIM-Signature: field
   * computed by a content step (src/smtp/content-steps.ts). They depend on the whole body, so they
   * are known only after the last byte was streamed to the store; rather than buffer the message
   * or rewrite its file, they are committed with the envelope (the same fsync round) and every
   * reader gets them first: QueueStore.message() yields them before the stored bytes.
   */
  headerPrefix?: string;
  /**
   * SHA-256 (hex) of the message file as written. Recovery after an unclean stop compares it, so a
   * message whose commit was cut short is never mistaken for a queued one (spool.ts).
   */
  sha256?: string;
  client: ClientInfo;
  /**
   * The reverse path is vouched for: at intake the client had authenticated, was in `mynetworks`
   * (port 25) or was the local sendmail. Decided by the policy of that moment and read by the
   * bounce generator: only such senders get success and delay reports and their message back
   * whole (RET=FULL); anyone else's MAIL FROM may be forged, and a report to it is backscatter
   * (docs/SECURITY.md 11.3). Absent (spooled by an older version): vouched only if authUser is set.
   */
  senderVouched?: boolean;
  /**
   * RFC 8689 §4.1: MAIL FROM carried REQUIRETLS: every hop must be TLS verified by MTA-STS or DANE
   * and offer REQUIRETLS, else the message bounces (5.7.30).
   */
  requireTls?: boolean;
  /** RFC 8689 §5: the message had "TLS-Required: No" (and no REQUIRETLS): deliver even where a TLS policy fails. */
  tlsRequiredNo?: boolean;
  recipients: EnvelopeRecipient[];
  /** Set by `postern queue hold`; the runner skips the message until released (survives restarts). */
  held?: boolean;
  /** A TLS-RPT report we send (RFC 8460 §5.3): its sessions are left out of the reports. */
  tlsReport?: boolean;
  /** This message is a delivery report (DSN) about the message with this queue id. */
  dsnOf?: string;
  /** Notices sent about this message, recorded before and after injection so a rerun never repeats one. */
  notices?: Partial<Record<"final" | "delay", { id: string; injected: boolean }>>;
}

/** The envelope before the spool gives it an id, size and per-recipient state. */
export type NewEnvelope = Omit<Envelope, "id" | "size" | "sha256" | "receivedAt" | "recipients"> & {
  recipients: Pick<EnvelopeRecipient, "address" | "notify" | "orcpt">[];
};

/** Streams one message into the spool. Nothing is visible to the queue until commit() resolves. */
export interface SpoolWriter {
  /** The queue id this message will have once committed (known up front for the Received: header). */
  readonly id: string;
  /** Resolves when the chunk is accepted (respecting back-pressure). */
  write(chunk: Buffer): Promise<void>;
  readonly bytesWritten: number;
  /** Writes the envelope, fsyncs both files and both directories in one round; returns the queue id. */
  commit(envelope: NewEnvelope): Promise<string>;
  /** Remove everything written so far; safe to call twice or after a failed commit. */
  abort(): Promise<void>;
}

/** A queued message's bytes, as delivery sees them: opened on demand, never a path. */
export interface MessageSource {
  /** Octets open() yields (header lines the content steps prepended included). */
  readonly size: number;
  /** A new stream of the whole message each call; errors (gone, I/O) surface on the stream. */
  open(): Readable;
}

/** Result of one delivery attempt for one recipient. */
export interface RecipientResult {
  address: string;
  outcome: "delivered" | "deferred" | "failed";
  /** The reply or error, e.g. "250 2.0.0 Ok" or "connect ECONNREFUSED 127.0.0.1:2600". */
  detail: string;
  /** Optional, for DSNs: the host that answered, and whether it took over DSN duties (see EnvelopeRecipient). */
  remoteMta?: string;
  dsnPassedOn?: boolean;
  /** The outbound TLS policy that applied (MX delivery). */
  tlsPolicy?: TlsPolicyName;
}

/** One delivery attempt for some of a message's recipients; one result per recipient given. */
export type DeliverFn = (env: Envelope, message: MessageSource, recipients: EnvelopeRecipient[]) => Promise<RecipientResult[]>;

/** Retry policy (seconds). Back-off doubles from firstRetrySec up to maxBackoffSec. */
export interface RetrySchedule {
  firstRetrySec: number;
  maxBackoffSec: number;
  /** A recipient still deferred this long after receivedAt fails. */
  maxLifetimeSec: number;
}
