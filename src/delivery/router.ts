/**
 * Routes one delivery attempt: local recipients into their Maildir, remote recipients through one
 * SMTP session to the smarthost (MX delivery comes later). Produces one RecipientResult per
 * recipient: 2xx delivered, 4xx or a broken connection deferred, 5xx failed.
 */
import { createReadStream } from "node:fs";
import type { DeliverFn, Envelope, EnvelopeRecipient, QueueLogger, RecipientResult } from "../queue/types.js";
import { deliverToMaildir, maildirPathFor } from "./maildir.js";
import { isSafePath, SmtpClient, SmtpClientError, type SmtpTlsMode } from "./smtp-client.js";

export interface SmarthostConfig {
  host: string;
  port: number;
  tls: SmtpTlsMode;
  auth?: { username: string; password: string; mechanism?: string };
  rejectUnauthorized?: boolean;
  ca?: string | Buffer;
  servername?: string;
  timeoutMs?: number;
}

export interface DelivererOptions {
  /** Decides on the final domain, lower-cased without a trailing dot. */
  isLocalDomain(domain: string): boolean;
  /** e.g. "/var/mail/{domain}/{localpart}/Maildir" (see maildirPathFor). */
  maildirTemplate: string;
  smarthost?: SmarthostConfig;
  heloName: string;
  fsync: boolean;
  logger: QueueLogger;
}

export const NO_ROUTE_DETAIL = "no route: MX delivery not configured";

/** Splits at the last "@" (a quoted local part may hold one; the domain never does). */
export function splitAddress(address: string): { localPart: string; domain: string } {
  const at = address.lastIndexOf("@");
  if (at <= 0) return { localPart: address, domain: "" };
  return { localPart: address.slice(0, at), domain: address.slice(at + 1).toLowerCase().replace(/\.$/, "") };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function createDeliverer(opts: DelivererOptions): DeliverFn {
  return async (env, messagePath, recipients) => {
    const local: EnvelopeRecipient[] = [];
    const remote: EnvelopeRecipient[] = [];
    for (const r of recipients) (opts.isLocalDomain(splitAddress(r.address).domain) ? local : remote).push(r);

    const [localResults, remoteResults] = await Promise.all([
      deliverLocal(opts, env, messagePath, local),
      deliverRemote(opts, env, messagePath, remote),
    ]);
    const byAddress = new Map([...localResults, ...remoteResults].map((r) => [r.address, r]));
    return recipients.map((r) => byAddress.get(r.address)!);
  };
}

/** Trace headers added at final delivery (RFC 5321 §4.4: Return-Path is added by the final hop). */
function localPrefix(env: Envelope, rcpt: string): Buffer {
  // The SMTP parser validated both paths; a line break here would inject headers.
  if (/[\r\n]/.test(env.mailFrom) || /[\r\n]/.test(rcpt)) throw new Error("line break in an envelope address");
  return Buffer.from(`Return-Path: <${env.mailFrom}>\r\nDelivered-To: ${rcpt}\r\n`, "utf8");
}

async function deliverLocal(
  opts: DelivererOptions,
  env: Envelope,
  messagePath: string,
  recipients: EnvelopeRecipient[],
): Promise<RecipientResult[]> {
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
      const file = await deliverToMaildir(path, messagePath, { prefix: localPrefix(env, rcpt.address), fsync: opts.fsync });
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

async function deliverRemote(
  opts: DelivererOptions,
  env: Envelope,
  messagePath: string,
  recipients: EnvelopeRecipient[],
): Promise<RecipientResult[]> {
  // The SMTP parser already refused these; checked again so one bad path cannot sink the others.
  const unsafe = (r: EnvelopeRecipient) => !isSafePath(r.address) || !isSafePath(env.mailFrom);
  const refused: RecipientResult[] = recipients
    .filter(unsafe)
    .map((r) => ({ address: r.address, outcome: "failed", detail: "553 5.1.3 address not usable on an SMTP command line" }));
  const sendable = recipients.filter((r) => !unsafe(r));
  if (sendable.length === 0) return refused;
  return [...refused, ...(await relayToSmarthost(opts, env, messagePath, sendable))];
}

async function relayToSmarthost(
  opts: DelivererOptions,
  env: Envelope,
  messagePath: string,
  recipients: EnvelopeRecipient[],
): Promise<RecipientResult[]> {
  const everyone = (outcome: RecipientResult["outcome"], detail: string) =>
    recipients.map((r) => ({ address: r.address, outcome, detail }));
  const relay = opts.smarthost;
  if (!relay) return everyone("deferred", NO_ROUTE_DETAIL);

  let client: SmtpClient | undefined;
  try {
    client = await SmtpClient.connect({
      host: relay.host,
      port: relay.port,
      tls: relay.tls,
      servername: relay.servername,
      rejectUnauthorized: relay.rejectUnauthorized,
      ca: relay.ca,
      heloName: opts.heloName,
      timeoutMs: relay.timeoutMs,
    });
    if (relay.auth) {
      await client.auth(relay.auth.mechanism ?? "auto", { username: relay.auth.username, password: relay.auth.password });
    }
  } catch (err) {
    client?.close();
    // Trouble before MAIL (refused connection, TLS, AUTH) is ours or the relay's, never the
    // recipient's: defer so the admin can fix it without bouncing mail.
    opts.logger.warn({ event: "smarthost-error", id: env.id, relay: `${relay.host}:${relay.port}`, err: errorText(err) }, "delivery: smarthost session failed");
    return everyone("deferred", `smarthost ${relay.host}:${relay.port}: ${errorText(err)}`);
  }

  try {
    const result = await client.sendMail({
      from: env.mailFrom,
      to: recipients.map((r) => ({ address: r.address, notify: r.notify, orcpt: r.orcpt })),
      size: env.size,
      body8bit: env.body === "8BITMIME",
      smtputf8: env.smtputf8,
      ret: env.ret,
      envid: env.envid,
      message: createReadStream(messagePath),
    });
    await client.quit();
    return result.recipients; // the queue logs each outcome
  } catch (err) {
    client.close();
    const detail = `smarthost ${relay.host}:${relay.port}: ${errorText(err)}`;
    opts.logger.warn({ event: "smarthost-error", id: env.id, relay: `${relay.host}:${relay.port}`, err: errorText(err) }, "delivery: smarthost transaction failed");
    // A broken connection mid-transaction may or may not have delivered: retrying risks a
    // duplicate, which RFC 5321 §6.1 prefers to a loss.
    const permanent = err instanceof SmtpClientError && err.permanent;
    return everyone(permanent ? "failed" : "deferred", detail);
  }
}
