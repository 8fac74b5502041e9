/**
 * LMTP client (RFC 2033) for local delivery through Dovecot or any LMTP server: LHLO, MAIL, RCPTs
 * (pipelined when offered, RFC 2920), DATA, then one reply per accepted recipient (RFC 2033 §4.2),
 * so each mailbox's outcome is known on its own. Over a unix socket or TCP; one session per batch.
 */
import { connect as netConnect } from "node:net";
import type { Envelope, EnvelopeRecipient, RecipientResult } from "../queue/types.js";
import type { MessageSource } from "../queue/types.js";
import { isSafePath, outcomeOfCode } from "./smtp-client.js";
import { SmtpClientError, SmtpConnection } from "./smtp-connection.js";
import { describeReply, parseEhloReply, type SmtpReply } from "./smtp-reply.js";

export interface LmtpTarget {
  /** Unix socket path, or host and port. */
  path?: string;
  host?: string;
  port?: number;
}

export interface LmtpOptions {
  heloName: string;
  timeoutMs?: number;
  onTranscript?: (dir: "C" | "S", line: string) => void;
}

export function describeTarget(t: LmtpTarget): string {
  return t.path ? `unix:${t.path}` : `${t.host}:${t.port}`;
}

/** Delivers one message to `recipients` over one LMTP session; one result per recipient. */
export async function deliverLmtp(
  target: LmtpTarget,
  env: Envelope,
  message: MessageSource,
  recipients: Pick<EnvelopeRecipient, "address">[],
  opts: LmtpOptions,
): Promise<RecipientResult[]> {
  const timeoutMs = opts.timeoutMs ?? 300_000;
  const where = describeTarget(target);
  const everyone = (outcome: RecipientResult["outcome"], detail: string) => recipients.map((r) => ({ address: r.address, outcome, detail }));
  if (!isSafePath(env.mailFrom) || recipients.some((r) => !isSafePath(r.address))) {
    return everyone("failed", "553 5.1.3 address not usable on an LMTP command line");
  }
  const socket = target.path ? netConnect({ path: target.path }) : netConnect({ host: target.host!, port: target.port! });
  const conn = new SmtpConnection(socket, false, opts.onTranscript);
  const command = (line: string, stage: string): Promise<SmtpReply> => {
    conn.send(line);
    return conn.readReply(timeoutMs, stage);
  };
  try {
    await conn.established(timeoutMs);
    const greeting = await conn.readReply(timeoutMs, "greeting");
    if (greeting.code !== 220) return everyone(outcomeOfCode(greeting.code) === "failed" ? "failed" : "deferred", `LMTP ${where}: ${describeReply(greeting)}`);
    // RFC 2033 §4.1: LHLO, never HELO/EHLO.
    const lhlo = await command(`LHLO ${opts.heloName}`, "LHLO");
    if (lhlo.code !== 250) return everyone("deferred", `LMTP ${where}: LHLO ${describeReply(lhlo)}`);
    const caps = parseEhloReply(lhlo);

    const params: string[] = [];
    if (env.body === "8BITMIME" && caps.eightBitMime) params.push("BODY=8BITMIME");
    if (env.smtputf8 && caps.smtputf8) params.push("SMTPUTF8");
    const lines = [[`MAIL FROM:<${env.mailFrom}>`, ...params].join(" "), ...recipients.map((r) => `RCPT TO:<${r.address}>`)];
    const replies: SmtpReply[] = [];
    if (caps.pipelining) {
      conn.sendGroup(lines);
      for (let i = 0; i < lines.length; i++) replies.push(await conn.readReply(timeoutMs, i === 0 ? "MAIL" : "RCPT"));
    } else {
      for (const [i, line] of lines.entries()) {
        replies.push(await command(line, i === 0 ? "MAIL" : "RCPT"));
        if (i === 0 && replies[0]!.code !== 250) break;
      }
    }
    const mailReply = replies[0]!;
    if (mailReply.code !== 250) {
      return everyone(outcomeOfCode(mailReply.code) === "failed" ? "failed" : "deferred", describeReply(mailReply));
    }
    const results: RecipientResult[] = recipients.map((r, i) => ({
      address: r.address,
      outcome: outcomeOfCode(replies[i + 1]!.code),
      detail: describeReply(replies[i + 1]!),
    }));
    const accepted = results.filter((r) => r.outcome === "delivered");
    if (accepted.length === 0) {
      await command("QUIT", "QUIT").catch(() => undefined);
      return results;
    }
    const start = await command("DATA", "DATA");
    if (start.code !== 354) {
      for (const r of accepted) Object.assign(r, { outcome: outcomeOfCode(start.code), detail: describeReply(start) });
      return results;
    }
    await conn.writeMessage(message.open(), timeoutMs);
    // RFC 2033 §4.2: one reply per recipient that RCPT accepted, in RCPT order.
    for (const r of accepted) {
      const reply = await conn.readReply(timeoutMs, "end of data");
      Object.assign(r, { outcome: outcomeOfCode(reply.code), detail: describeReply(reply) });
    }
    await command("QUIT", "QUIT").catch(() => undefined);
    return results;
  } catch (err) {
    const text = err instanceof Error ? err.message : String(err);
    // A broken session: what was not confirmed per recipient is retried (a duplicate beats a loss).
    const permanent = err instanceof SmtpClientError && err.permanent;
    return everyone(permanent ? "failed" : "deferred", `LMTP ${where}: ${text}`);
  } finally {
    conn.end();
  }
}
