/**
 * Delivery over SMTP to one destination: a smarthost, or a domain's MX hosts in order
 * (RFC 5321 §5.1: try the next host when one cannot be reached or will not talk; once a
 * transaction has started its replies stand). All recipients for the destination share one
 * transaction; sessions come from the pool (reuse, concurrency limits).
 */
import type { Envelope, EnvelopeRecipient, RecipientResult } from "../queue/types.js";
import type { MessageSource } from "../queue/types.js";
import type { MxResolver } from "./mx.js";
import { SmtpClient, SmtpClientError, type SmtpTlsMode } from "./smtp-client.js";
import type { SmtpPool } from "./smtp-pool.js";
import type { TlsRequirement } from "./transport.js";
import type { Log } from "../base/log.js";

export interface SmtpEndpoint {
  host: string;
  port: number;
  tls: SmtpTlsMode;
  rejectUnauthorized?: boolean;
  ca?: string | Buffer;
  servername?: string;
  auth?: { username: string; password: string; mechanism?: string };
  timeoutMs?: number;
  /** Permit AUTH without TLS (test rigs only). */
  allowPlaintextAuth?: boolean;
}

export interface RemoteContext {
  pool: SmtpPool;
  heloName: string;
  logger: Log;
  /** Hosts tried per attempt at most (Postfix smtp_mx_address_limit is 5). */
  maxHosts?: number;
}

type Outcome = RecipientResult["outcome"];

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function tlsModeOf(req: TlsRequirement | undefined, fallback: SmtpTlsMode): SmtpTlsMode {
  if (req === "none") return "none";
  if (req === "may") return "starttls-opportunistic";
  if (req === "must") return "starttls-required";
  return fallback;
}

/** True when the message holds a byte with the high bit set (needs 8BITMIME, RFC 6152). */
async function hasEightBit(message: MessageSource): Promise<boolean> {
  for await (const chunk of message.open()) {
    if ((chunk as Buffer).some((b) => b >= 0x80)) return true;
  }
  return false;
}

/** Delivers to the MX hosts of `domain`. */
export async function deliverViaMx(
  ctx: RemoteContext,
  domain: string,
  resolver: MxResolver,
  endpointFor: (host: string, address: string) => SmtpEndpoint,
  env: Envelope,
  message: MessageSource,
  recipients: EnvelopeRecipient[],
): Promise<RecipientResult[]> {
  const everyone = (outcome: Outcome, detail: string) => recipients.map((r) => ({ address: r.address, outcome, detail }));
  const route = await resolver.resolve(domain);
  if (!route.ok) {
    ctx.logger.warn({ event: "mx-error", id: env.id, domain, detail: route.detail }, "delivery: MX lookup gave no usable host");
    return everyone(route.outcome, route.detail);
  }
  const candidates = route.hosts.flatMap((h) => h.addresses.map((a) => ({ name: h.name, address: a })));
  let lastError = "no MX host could be reached";
  for (const c of candidates.slice(0, ctx.maxHosts ?? 5)) {
    const attempt = await deliverToEndpoint(ctx, domain, endpointFor(c.name, c.address), env, message, recipients);
    if (attempt.kind === "done") return attempt.results;
    lastError = `${c.name}[${c.address}]: ${attempt.error}`;
    ctx.logger.warn(
      { event: "mx-host-failed", id: env.id, domain, host: c.name, address: c.address, err: attempt.error },
      "delivery: MX host failed, trying the next",
    );
    if (attempt.permanent) return everyone("failed", lastError);
  }
  return everyone("deferred", lastError);
}

export type EndpointAttempt =
  | { kind: "done"; results: RecipientResult[] }
  /** Could not start a transaction with this host: another host may do. */
  | { kind: "unreachable"; error: string; permanent: boolean };

/** One session (possibly reused) to one host, one transaction for all recipients. */
export async function deliverToEndpoint(
  ctx: RemoteContext,
  destination: string,
  ep: SmtpEndpoint,
  env: Envelope,
  message: MessageSource,
  recipients: EnvelopeRecipient[],
): Promise<EndpointAttempt> {
  const sessionKey = [ep.host, ep.port, ep.tls, ep.rejectUnauthorized ?? "", ep.servername ?? "", ep.auth?.username ?? ""].join("|");
  const connect = async () => {
    const client = await SmtpClient.connect({
      host: ep.host,
      port: ep.port,
      tls: ep.tls,
      servername: ep.servername,
      rejectUnauthorized: ep.rejectUnauthorized,
      ca: ep.ca,
      heloName: ctx.heloName,
      timeoutMs: ep.timeoutMs,
      allowPlaintextAuth: ep.allowPlaintextAuth,
    });
    try {
      if (ep.auth) await client.auth(ep.auth.mechanism ?? "auto", { username: ep.auth.username, password: ep.auth.password });
    } catch (err) {
      client.close();
      throw err;
    }
    return client;
  };
  let started = false;
  try {
    return await ctx.pool.withSession(destination, sessionKey, connect, async (client) => {
      const everyone = (outcome: Outcome, detail: string): EndpointAttempt => ({
        kind: "done",
        results: recipients.map((r) => ({ address: r.address, outcome, detail })),
      });
      // RFC 6152: 8-bit content may not go to a peer without 8BITMIME. We do not downgrade
      // (rewriting MIME parts would break signatures); the sender learns why.
      if (env.body === "8BITMIME" && !client.capabilities.eightBitMime && (await hasEightBit(message))) {
        return { value: everyone("failed", "554 5.6.3 8-bit message and the peer does not support 8BITMIME"), reusable: true };
      }
      started = true;
      const sent = await client.sendMail({
        from: env.mailFrom,
        to: recipients.map((r) => ({ address: r.address, notify: r.notify, orcpt: r.orcpt })),
        size: message.size,
        body8bit: env.body === "8BITMIME",
        smtputf8: env.smtputf8,
        ret: env.ret,
        envid: env.envid,
        message: message.open(),
      });
      const remoteMta = ep.servername ?? ep.host;
      // RFC 3461 §6.2.2: a DSN-capable peer that took the recipient now owns its success notice.
      const results = sent.recipients.map((r) => ({ ...r, remoteMta, dsnPassedOn: r.outcome === "delivered" && client.capabilities.dsn }));
      return { value: { kind: "done", results } as EndpointAttempt, reusable: true };
    });
  } catch (err) {
    const detail = `${ep.host}:${ep.port}: ${errorText(err)}`;
    if (!started) {
      // Trouble before MAIL (connection, greeting, TLS, AUTH) says nothing about the recipients.
      return { kind: "unreachable", error: errorText(err), permanent: false };
    }
    ctx.logger.warn({ event: "smtp-error", id: env.id, peer: `${ep.host}:${ep.port}`, err: errorText(err) }, "delivery: SMTP transaction failed");
    // A break mid-transaction may or may not have delivered: retrying risks a duplicate, which
    // RFC 5321 §6.1 prefers to a loss.
    const permanent = err instanceof SmtpClientError && err.permanent;
    return { kind: "done", results: recipients.map((r) => ({ address: r.address, outcome: permanent ? "failed" : "deferred", detail })) };
  }
}
