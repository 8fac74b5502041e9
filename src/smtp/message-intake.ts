/**
 * One message on its way into the spool, whether it arrives by DATA or by BDAT chunks: the header
 * section is inspected on the fly (trace fields on top, loop and From: checks), bytes are written
 * in order with back-pressure, and at the end the message is either refused and removed or
 * committed durably before the 250 (SECURITY.md rule 16).
 */
import { randomBytes } from "node:crypto";
import { reply, type Reply } from "./reply.js";
import type { DataError } from "./data-reader.js";
import { HeaderCollector, type HeaderInfo } from "./headers.js";
import { buildReceivedHeader, rfc5322Date } from "./trace.js";
import type { MailPath, MailParams } from "./address.js";
import type { EnvelopeRecipient, NewEnvelope, SpoolWriter } from "../queue/types.js";
import type { ConnectionFacts, SenderAccount, SessionOutput, SessionPorts, SessionSettings } from "./session-types.js";

export interface Transaction {
  sender: MailPath;
  params: MailParams;
  recipients: Pick<EnvelopeRecipient, "address" | "notify" | "orcpt">[];
  refusedRecipients: number;
  /** The login's account as looked up at MAIL, reused for the From: check at the end of DATA. */
  account: SenderAccount | null;
}

/** What the session knows about the client when the message starts. */
export interface IntakeContext {
  settings: SessionSettings;
  ports: SessionPorts;
  facts: ConnectionFacts;
  helo: string | null;
  esmtp: boolean;
  authUser: string | null;
  tx: Transaction;
}

interface Refusal {
  reply: Reply;
  reason: string;
  close?: boolean;
}

export class MessageIntake {
  private readonly headers: HeaderCollector;
  /** Writes in flight are chained so the spool sees bytes in order. */
  private pending: Promise<void> = Promise.resolve();
  private writeError: unknown;
  private refusal?: Refusal;
  /** The From: fields of submitted mail, checked against the login at the end. */
  private fromHeader?: string;
  /** The message's first byte: white space there would fold into our Received: field. */
  private firstByte?: number;
  private queued = 0;

  private constructor(
    private readonly ctx: IntakeContext,
    private readonly writer: SpoolWriter,
  ) {
    this.headers = new HeaderCollector({ maxHeaderBytes: ctx.settings.limits.headerBytes });
    this.headers.setHeaderEndHook((info) => this.headerSectionDone(info));
  }

  /** Opens a spool file for the message, or answers why it cannot be taken now. */
  static async open(ctx: IntakeContext): Promise<MessageIntake | Reply> {
    try {
      return new MessageIntake(ctx, await ctx.ports.openSpool());
    } catch (err) {
      ctx.ports.log.warn({ event: "spool-error", err: String(err) }, "cannot open spool file");
      return storageErrorReply(err);
    }
  }

  /** Octets taken so far (queued for the spool, not necessarily written yet). */
  get size(): number {
    return this.queued;
  }

  get refused(): Reply | undefined {
    return this.refusal?.reply;
  }

  /** Refuse the message at the end (first refusal wins); it keeps being read but not stored. */
  refuse(r: Reply, reason: string): void {
    this.refusal ??= { reply: r, reason };
  }

  /** Message bytes, already unstuffed (DATA) or raw (BDAT). */
  add(piece: Buffer): void {
    if (piece.length === 0) return;
    this.firstByte ??= piece[0];
    this.queued += piece.length;
    this.write(this.headers.push(piece));
  }

  /** Resolves once the spool has taken every byte so far (the connection reads on only then). */
  written(): Promise<void> {
    return this.pending;
  }

  private write(pieces: Buffer[]): void {
    for (const piece of pieces) {
      if (piece.length === 0) continue;
      this.pending = this.pending.then(() => this.writer.write(piece)).catch((err) => {
        this.writeError ??= err;
      });
    }
  }

  /** Called once, when the header section is complete: checks it and returns what goes on top. */
  private headerSectionDone(info: HeaderInfo): Buffer {
    const { settings, ports, facts, tx, authUser } = this.ctx;
    if (info.count("received") >= settings.limits.maxReceivedHeaders) {
      // RFC 5321 §6.3: a mail loop.
      this.refuse(reply(554, "5.4.6", "Error: too many hops (mail loop?)"), "mail loop");
    }
    let top = buildReceivedHeader({
      heloName: this.ctx.helo ?? "unknown",
      clientIp: facts.remoteIp,
      hostname: settings.hostname,
      protocol: this.protocolName(),
      queueId: this.writer.id,
      tls: facts.tls,
      recipient: tx.recipients.length === 1 ? tx.recipients[0]!.address : undefined,
      date: ports.now(),
    });
    if (settings.mode !== "mta" && authUser !== null) {
      // RFC 6409 §8.2, §8.3: the MSA adds Date and Message-ID when the client left them out.
      if (info.get("date") === undefined) top += `Date: ${rfc5322Date(ports.now())}\r\n`;
      if (info.get("message-id") === undefined)
        top += `Message-ID: <${ports.now().getTime().toString(36)}.${randomBytes(8).toString("hex")}@${settings.hostname}>\r\n`;
      // Every From: field is checked (a second one must not slip past), and a header section too
      // large to inspect whole could hide one after the limit: refuse it rather than guess.
      const froms = info.getAll("from");
      this.fromHeader = froms.length > 0 ? froms.join(", ") : undefined;
      if (info.truncated) this.refuse(reply(552, "5.3.4", "Error: message header section too large"), "header section over the headerBytes limit");
    }
    // Content starting with white space would continue our last field (client text in our trace
    // header, SECURITY.md rule 19): end our header section first, as Postfix's smtpd does.
    if (this.firstByte === 0x20 || this.firstByte === 0x09) top += "\r\n";
    return Buffer.from(top, "utf8");
  }

  /** RFC 3848 protocol names. */
  private protocolName(): string {
    if (!this.ctx.esmtp) return "SMTP";
    return `ESMTP${this.ctx.facts.tls ? "S" : ""}${this.ctx.authUser ? "A" : ""}`;
  }

  /**
   * The message is complete (or the reader gave up with `error`): refuse and remove it, or commit
   * it and answer 250 only once it is durable. `queued` tells the session a message was taken.
   */
  async finish(error?: DataError): Promise<{ output: SessionOutput; queued: boolean }> {
    const { settings, ports, tx, authUser } = this.ctx;
    if (!error) this.write(this.headers.finish());
    await this.pending;
    let refusal = this.refusal;
    if (error === "bare-line-end") {
      // SECURITY.md rule 1 (CVE-2023-51764 and kin): never a line end, never a message end.
      refusal = { reply: reply(521, "5.5.2", "Error: bare CR or LF received in message data"), reason: "bare CR/LF in DATA", close: true };
    } else if (error === "too-big") {
      refusal = { reply: reply(552, "5.3.4", "Message size exceeds fixed maximum message size"), reason: "message too big" };
    } else if (error === "line-too-long") {
      refusal = { reply: reply(500, "5.5.2", "Error: message line too long (RFC 5321 §4.5.3.1.6)"), reason: "line too long" };
    } else if (this.writeError !== undefined) {
      refusal = { reply: storageErrorReply(this.writeError), reason: `spool write failed: ${String(this.writeError)}` };
    }
    if (!refusal && settings.mode !== "mta" && authUser) {
      const account = tx.account;
      // Fail closed: a login without an account owns no address.
      const check = account
        ? ports.checkFromHeader(account, this.fromHeader)
        : { allow: false as const, reply: reply(553, "5.7.1", "From: header address rejected: login has no mailbox"), reason: "login has no account" };
      if (!check.allow) refusal = check;
    }
    if (refusal) {
      await this.abort();
      ports.log.info({ event: "data-refused", from: tx.sender.address, reason: refusal.reason }, "message refused");
      return { output: { replies: [refusal.reply], action: refusal.close ? "close" : undefined }, queued: false };
    }
    const envelope = this.envelope();
    let id: string;
    try {
      // SECURITY.md rule 16: 250 only once data and envelope are durable.
      id = await this.writer.commit(envelope);
    } catch (err) {
      await this.abort();
      ports.log.warn({ event: "spool-error", err: String(err) }, "queue commit failed");
      return { output: { replies: [storageErrorReply(err)] }, queued: false };
    }
    ports.log.info(
      { event: "queued", id, from: tx.sender.address, to: tx.recipients.map((r) => r.address), size: this.writer.bytesWritten },
      "message queued",
    );
    ports.queued(id, envelope);
    if (authUser) ports.sendLimits?.sent(authUser, tx.recipients.length);
    return { output: { replies: [reply(250, "2.0.0", `Ok: queued as ${id}`)] }, queued: true };
  }

  private envelope(): NewEnvelope {
    const { settings, facts, tx, helo, authUser } = this.ctx;
    return {
      mailFrom: tx.sender.address,
      body: tx.params.body,
      smtputf8: tx.params.smtputf8,
      ret: tx.params.ret,
      envid: tx.params.envid,
      client: { ip: facts.remoteIp, helo: helo ?? "", listener: settings.mode, authUser: authUser ?? undefined, tls: facts.tls },
      recipients: tx.recipients,
    };
  }

  /** Removes everything written; waits for writes in flight first. Safe to call twice. */
  async abort(): Promise<void> {
    await this.pending;
    await this.writer.abort().catch(() => undefined);
  }
}

/** RFC 3463: a full disk is 4.3.1 "mail system full" (452, RFC 5321 §4.2.2); any other failure 4.3.0. */
export function storageErrorReply(err: unknown): Reply {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOSPC" || code === "EDQUOT") return reply(452, "4.3.1", "Error: insufficient system storage");
  return reply(451, "4.3.0", "Error: queue file write error");
}
