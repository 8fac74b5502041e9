/**
 * Routes one delivery attempt. Local recipients are expanded (aliases, +detail, catch-all), then
 * every final target goes the way the transport table says (Maildir, LMTP, the smarthost, MX,
 * discard, reject); recipients for the same destination share one session. Produces one
 * RecipientResult per recipient given: 2xx delivered, 4xx or a broken connection deferred, 5xx failed.
 */
import type { DeliverFn, Envelope, EnvelopeRecipient, MessageSource, RecipientResult } from "../queue/types.js";
import { normaliseDomain } from "../base/domain.js";
import type { AliasResolver } from "./aliases.js";
import { deliverLmtp } from "./lmtp.js";
import { deliverToMaildir, maildirPathFor } from "./maildir.js";
import type { MxResolver } from "./mx.js";
import { deliverToEndpoint, deliverViaMx, tlsModeOf, type RemoteContext, type SmtpEndpoint } from "./remote.js";
import { isSafePath } from "./smtp-client.js";
import type { SmarthostConfig } from "./smarthost.js";
import { SmtpPool } from "./smtp-pool.js";
import { transportKey, TransportTable, type Transport } from "./transport.js";
import type { Log } from "../base/log.js";
import { demandsOf, type OutboundTlsPolicy } from "./tls-policy/policy.js";

export interface DelivererOptions {
  /** Decides on the final domain, lower-cased without a trailing dot. */
  isLocalDomain(domain: string): boolean;
  /** e.g. "/var/mail/{domain}/{localpart}/Maildir" (see maildirPathFor). */
  maildirTemplate: string;
  smarthost?: SmarthostConfig;
  heloName: string;
  fsync: boolean;
  logger: Log;
  /** Per-domain routes; without it: local → Maildir, the rest → smarthost, else MX. */
  transport?: TransportTable;
  /** MX lookups; without it a route to MX defers with NO_ROUTE_DETAIL. */
  mx?: MxResolver;
  /** Port for MX hosts (25; tests use an ephemeral sink port). */
  mxPort?: number;
  /** Test rigs: a port per MX host name, so several sinks on 127.0.0.1 can stand for several hosts. */
  mxHostPorts?: Record<string, number>;
  /** CA for verifying peers' certificates where a route says verify=yes (default: the system's). */
  ca?: string | Buffer;
  /** Local recipients are expanded through it at delivery. */
  aliases?: AliasResolver;
  /** Session reuse and concurrency limits; a private pool without reuse when absent. */
  pool?: SmtpPool;
  /** Deadline for each SMTP/LMTP command's reply. */
  timeoutMs?: number;
  /** MTA-STS, DANE and TLS-RPT for MX delivery (issue 15); opportunistic TLS without it. */
  tlsPolicy?: OutboundTlsPolicy;
}

export const NO_ROUTE_DETAIL = "no route: MX delivery not configured";

/** Splits at the last "@" (a quoted local part may hold one; the domain never does). */
export function splitAddress(address: string): { localPart: string; domain: string } {
  const at = address.lastIndexOf("@");
  if (at <= 0) return { localPart: address, domain: "" };
  return { localPart: address.slice(0, at), domain: normaliseDomain(address.slice(at + 1)) };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function createDeliverer(opts: DelivererOptions): DeliverFn {
  const table = opts.transport ?? new TransportTable({ entries: {}, isLocalDomain: opts.isLocalDomain, hasSmarthost: opts.smarthost !== undefined });
  // Without a shared pool: no reuse, limits only per call (the old one-session-per-attempt behaviour).
  const pool = opts.pool ?? new SmtpPool({ maxTotal: 1000, maxPerDestination: 1000, idleTimeoutMs: 0, maxMessagesPerSession: 1 });
  return async (env, message, recipients) => {
    // 1. Expand local recipients into final targets; remember which recipient each came from.
    const targetsOf = new Map<string, string[]>();
    const early = new Map<string, RecipientResult>();
    for (const r of recipients) {
      const { domain } = splitAddress(r.address);
      if (!opts.aliases || !opts.isLocalDomain(domain)) {
        targetsOf.set(r.address, [r.address]);
        continue;
      }
      try {
        const x = await opts.aliases.expand(r.address);
        // Postmaster must always work (RFC 5321 §4.5.1): without an alias it is its own Maildir.
        if (x === null && /^postmaster$/i.test(splitAddress(r.address).localPart)) targetsOf.set(r.address, [r.address]);
        else if (x === null) early.set(r.address, { address: r.address, outcome: "failed", detail: "550 5.1.1 mailbox unknown" });
        else targetsOf.set(r.address, [...x.mailboxes, ...x.remote]);
      } catch (err) {
        early.set(r.address, { address: r.address, outcome: "deferred", detail: `451 4.3.0 alias expansion failed: ${errorText(err)}` });
      }
    }
    // 2. Group the targets by route; each group is one session (RFC 5321 §5.1 per destination).
    const groups = new Map<string, { transport: Transport; domain: string; targets: EnvelopeRecipient[] }>();
    const byOriginal = new Map(recipients.map((r) => [r.address, r]));
    for (const [original, targets] of targetsOf) {
      const base = byOriginal.get(original)!;
      for (const t of targets) {
        const domain = splitAddress(t).domain;
        const transport = table.lookup(domain);
        const key = transportKey(transport, domain);
        let g = groups.get(key);
        if (!g) groups.set(key, (g = { transport, domain, targets: [] }));
        // ORCPT/NOTIFY travel with every target of an expanded alias (RFC 3461 §5.2.1).
        if (!g.targets.some((x) => x.address === t)) g.targets.push({ ...base, address: t });
      }
    }
    const done = await Promise.all([...groups.values()].map((g) => deliverGroup(opts, pool, g.transport, g.domain, env, message, g.targets)));
    const byTarget = new Map(done.flat().map((r) => [r.address, r]));
    // 3. One result per original recipient: deferred if any target is (all are retried: a
    // duplicate beats a loss), else failed if any failed, else delivered.
    return recipients.map(
      (r) =>
        early.get(r.address) ??
        combine(
          r.address,
          targetsOf.get(r.address)!.map((t) => byTarget.get(t)!),
        ),
    );
  };
}

function combine(address: string, parts: RecipientResult[]): RecipientResult {
  if (parts.length === 1) return { ...parts[0]!, address };
  const pick = parts.find((p) => p.outcome === "deferred") ?? parts.find((p) => p.outcome === "failed") ?? parts[0]!;
  const detail = parts.length > 1 ? parts.map((p) => `${p.address}: ${p.detail}`).join("; ") : pick.detail;
  return { address, outcome: pick.outcome, detail };
}

async function deliverGroup(
  opts: DelivererOptions,
  pool: SmtpPool,
  transport: Transport,
  domain: string,
  env: Envelope,
  message: MessageSource,
  recipients: EnvelopeRecipient[],
): Promise<RecipientResult[]> {
  const everyone = (outcome: RecipientResult["outcome"], detail: string) => sameResult(recipients, outcome, detail);
  switch (transport.kind) {
    case "maildir":
      return deliverLocal(opts, env, message, recipients);
    case "discard":
      opts.logger.info({ event: "discarded", id: env.id, to: recipients.map((r) => r.address) }, "delivery: discarded by the transport table");
      return everyone("delivered", "250 2.0.0 discarded by the transport table");
    case "reject":
      return everyone("failed", `554 5.7.1 mail for ${domain} is refused by the transport table`);
    case "lmtp":
      return deliverLmtp(transport, env, message, recipients, { heloName: opts.heloName, timeoutMs: opts.timeoutMs });
    case "smarthost":
    case "mx":
      break;
  }
  // The SMTP parser already refused these; checked again so one bad path cannot sink the others.
  const unsafe = (r: EnvelopeRecipient) => !isSafePath(r.address) || !isSafePath(env.mailFrom);
  const refused: RecipientResult[] = recipients
    .filter(unsafe)
    .map((r) => ({ address: r.address, outcome: "failed", detail: "553 5.1.3 address not usable on an SMTP command line" }));
  const sendable = recipients.filter((r) => !unsafe(r));
  if (sendable.length === 0) return refused;
  const ctx: RemoteContext = { pool, heloName: opts.heloName, logger: opts.logger, tlsPolicy: opts.tlsPolicy };
  if (transport.kind === "mx") {
    if (!opts.mx) return [...refused, ...sendable.map((r) => ({ address: r.address, outcome: "deferred" as const, detail: NO_ROUTE_DETAIL }))];
    const endpointFor = (host: string, address: string): SmtpEndpoint => ({
      host: address,
      port: opts.mxHostPorts?.[host] ?? opts.mxPort ?? 25,
      // RFC 7435: opportunistic TLS to MX hosts unless the route demands it.
      tls: tlsModeOf(transport.tls, "starttls-opportunistic"),
      rejectUnauthorized: transport.verify ?? false,
      servername: host,
      ca: opts.ca,
      timeoutMs: opts.timeoutMs,
    });
    return [...refused, ...(await deliverViaMx(ctx, domain, opts.mx, endpointFor, env, message, sendable, transport.tls === "none"))];
  }
  return [...refused, ...(await relayToSmarthost(opts, ctx, transport, env, message, sendable))];
}

/** Trace headers added at final delivery (RFC 5321 §4.4: Return-Path is added by the final hop). */
function localPrefix(env: Envelope, rcpt: string): Buffer {
  // The SMTP parser validated both paths; a line break here would inject headers.
  if (/[\r\n]/.test(env.mailFrom) || /[\r\n]/.test(rcpt)) throw new Error("line break in an envelope address");
  return Buffer.from(`Return-Path: <${env.mailFrom}>\r\nDelivered-To: ${rcpt}\r\n`, "utf8");
}

async function deliverLocal(opts: DelivererOptions, env: Envelope, message: MessageSource, recipients: EnvelopeRecipient[]): Promise<RecipientResult[]> {
  const results: RecipientResult[] = [];
  for (const rcpt of recipients) {
    let path: string;
    try {
      path = maildirPathFor(opts.maildirTemplate, splitAddress(rcpt.address));
    } catch (err) {
      opts.logger.warn({ event: "maildir-path-refused", id: env.id, to: rcpt.address, err: errorText(err) }, "delivery: no safe maildir path");
      results.push({ address: rcpt.address, outcome: "failed", detail: "550 5.1.1 mailbox name not usable for local delivery" });
      continue;
    }
    try {
      const file = await deliverToMaildir(path, message, { prefix: localPrefix(env, rcpt.address), fsync: opts.fsync });
      opts.logger.info({ event: "maildir-stored", id: env.id, to: rcpt.address, file }, "delivery: stored in maildir");
      results.push({ address: rcpt.address, outcome: "delivered", detail: "250 2.0.0 delivered to maildir" });
    } catch (err) {
      // Disk full, permissions, I/O: the mailbox may recover; keep trying until the lifetime ends.
      opts.logger.error({ event: "maildir-error", id: env.id, to: rcpt.address, err: errorText(err) }, "delivery: maildir write failed");
      results.push({ address: rcpt.address, outcome: "deferred", detail: `451 4.3.0 local delivery failed: ${errorText(err)}` });
    }
  }
  return results;
}

async function relayToSmarthost(
  opts: DelivererOptions,
  ctx: RemoteContext,
  route: Extract<Transport, { kind: "smarthost" }>,
  env: Envelope,
  message: MessageSource,
  recipients: EnvelopeRecipient[],
): Promise<RecipientResult[]> {
  const everyone = (outcome: RecipientResult["outcome"], detail: string) => sameResult(recipients, outcome, detail);
  const configured = opts.smarthost;
  // "smarthost host:port" names its own relay; AUTH only goes to the configured one.
  const sameAsConfigured = route.host === undefined || (configured && configured.host === route.host && configured.port === route.port);
  const base = sameAsConfigured ? configured : { host: route.host!, port: route.port!, tls: "starttls-opportunistic" as const };
  if (!base) return everyone("deferred", NO_ROUTE_DETAIL);
  const ep: SmtpEndpoint = {
    host: base.host,
    port: base.port,
    tls: tlsModeOf(route.tls, base.tls),
    rejectUnauthorized: route.verify ?? ("rejectUnauthorized" in base ? base.rejectUnauthorized : false),
    ca: ("ca" in base ? base.ca : undefined) ?? opts.ca,
    servername: "servername" in base ? base.servername : undefined,
    auth: "auth" in base ? base.auth : undefined,
    timeoutMs: ("timeoutMs" in base ? base.timeoutMs : undefined) ?? opts.timeoutMs,
  };
  // RFC 8689 §4.2.1: a REQUIRETLS message goes to the relay only over verified TLS, and only if it offers REQUIRETLS.
  const requireTls = demandsOf(env).requireTls;
  if (requireTls) {
    if (ep.tls === "none") return everyone("failed", `550 5.7.10 REQUIRETLS: the relay ${ep.host}:${ep.port} is configured without TLS`);
    if (ep.tls !== "implicit") ep.tls = "starttls-required";
    ep.rejectUnauthorized = true;
  }
  const where = `${ep.host}:${ep.port}`;
  const policy = requireTls ? { key: "requiretls", requireTls: true } : undefined;
  const attempt = await deliverToEndpoint(ctx, `smarthost:${where}`, ep, env, message, recipients, policy);
  if (attempt.kind === "done") return attempt.results;
  if (attempt.requireTlsRefusal) return everyone("failed", `smarthost ${where}: ${attempt.error}`);
  // RFC 8689 §4.2.1: the configured relay offers no TLS, or none that verifies: waiting will not
  // change that, so the REQUIRETLS message is returned now (5.7.10, encryption needed).
  if (requireTls && attempt.tlsFailure) {
    return everyone("failed", `550 5.7.10 REQUIRETLS: no verified TLS with the relay ${where} (${attempt.error})`);
  }
  // Trouble before MAIL (refused connection, TLS, AUTH) is ours or the relay's, never the
  // recipient's: defer so the admin can fix it without bouncing mail.
  opts.logger.warn({ event: "smarthost-error", id: env.id, relay: where, err: attempt.error }, "delivery: smarthost session failed");
  return everyone("deferred", `smarthost ${where}: ${attempt.error}`);
}

/** One outcome for every recipient of a group (a transport decision, or a session that failed). */
function sameResult(recipients: EnvelopeRecipient[], outcome: RecipientResult["outcome"], detail: string): RecipientResult[] {
  return recipients.map((r) => ({ address: r.address, outcome, detail }));
}
