/**
 * One message on its way into the spool, whether it arrives by DATA or by BDAT chunks: the header
 * section is inspected on the fly (trace fields on top, loop and From:/Sender: checks), bytes are
 * written in order with back-pressure, and at the end the message is either refused and removed
 * or committed durably before the 250 (SECURITY.md rule 16). Both readers hand it text with CRLF
 * line ends only, so the header checks read the lines every next hop reads (docs/SECURITY.md 11.1).
 * The content steps (content-steps.ts) see the stored bytes as they stream and, once every other
 * check has passed, may add header fields on top or refuse the message, just before the commit.
 */
import { randomBytes } from "node:crypto";
import { reply, type Reply } from "./reply.js";
import type { DataError } from "./data-reader.js";
import type { Decision } from "../base/decision.js";
import { HeaderCollector, type HeaderInfo } from "./headers.js";
import { ContentPipeline } from "./content-steps.js";
import { ourAuthResultsField } from "./auth-results-field.js";
import { taggedTlsRequiredNo } from "./tls-required-field.js";
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
  /** Envelope.senderVouched, decided at MAIL (docs/SECURITY.md 11.3). */
  senderVouched: boolean;
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

/** How DATA and BDAT answer a message their text rules stopped; the same words for both. */
export function dataErrorRefusal(error: DataError): Refusal {
  switch (error) {
    case "bare-line-end":
      // SECURITY.md rule 1 (CVE-2023-51764 and kin): never a line end, never a message end.
      return { reply: reply(521, "5.5.2", "Error: bare CR or LF received in message data"), reason: "bare CR/LF in message data", close: true };
    case "too-big":
      return { reply: reply(552, "5.3.4", "Message size exceeds fixed maximum message size"), reason: "message too big" };
    case "line-too-long":
      return { reply: reply(500, "5.5.2", "Error: message line too long (RFC 5321 §4.5.3.1.6)"), reason: "line too long" };
  }
}

/** A From: or Sender: field of a message from an authenticated client. */
interface SenderField {
  name: "From" | "Sender";
  value: string;
}

export class MessageIntake {
  private readonly headers: HeaderCollector;
  /** Writes in flight are chained so the spool sees bytes in order. */
  private pending: Promise<void> = Promise.resolve();
  private writeError: unknown;
  private refusal?: Refusal;
  /** The From: and Sender: fields of mail from a login, checked against it at the end. */
  private senderFields: SenderField[] = [];
  /** The message's first byte: white space there would fold into our Received: field. */
  private firstByte?: number;
  private queued = 0;
  /** The content steps' run over this message; undefined when there are none. */
  private readonly content?: ContentPipeline;
  /** The fields the checks read, for the content steps. */
  private checkedHeaders: HeaderInfo = NO_FIELDS;
  /** Envelope.tlsRequiredNo, read from the header section (RFC 8689 §4.1). */
  private tlsRequiredNo = false;

  private constructor(
    private readonly ctx: IntakeContext,
    private readonly writer: SpoolWriter,
  ) {
    // RFC 8601 §5: an Authentication-Results: field in our name is removed before it is stored.
    this.headers = new HeaderCollector({ maxHeaderBytes: ctx.settings.limits.headerBytes, dropField: ourAuthResultsField(ctx.settings.hostname) });
    this.headers.setHeaderEndHook((info) => this.headerSectionDone(info));
    const steps = ctx.ports.contentSteps?.() ?? [];
    if (steps.length > 0) {
      // Our fields on top and the client's header section, with room to spare: the most it holds.
      const held = ctx.settings.limits.headerBytes + 64 * 1024;
      this.content = new ContentPipeline(steps, () => ({ envelope: this.envelope(), headers: this.checkedHeaders }), held);
    }
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
      this.content?.push(piece);
      this.pending = this.pending
        .then(() => this.writer.write(piece))
        .catch((err) => {
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
    // Content starting with white space would continue our last field (client text in our trace
    // header, SECURITY.md rule 19): our header section ends before it (below), so every next hop
    // reads the client's lines as body, and so do the checks: they read what the next hop reads.
    const startsWithSpace = this.firstByte === 0x20 || this.firstByte === 0x09;
    const own = startsWithSpace ? NO_FIELDS : info;
    this.checkedHeaders = own;
    this.tlsRequiredNo = taggedTlsRequiredNo(own, tx.params.requireTls === true);
    if (settings.mode !== "mta" && authUser !== null) {
      // RFC 6409 §8.2, §8.3: the MSA adds Date and Message-ID when the client left them out. Not
      // on port 25, even after AUTH: there we are an MTA, and an MTA leaves the header section
      // as it came (RFC 5321 §6.4), trace fields aside.
      if (own.get("date") === undefined) top += `Date: ${rfc5322Date(ports.now())}\r\n`;
      if (own.get("message-id") === undefined)
        top += `Message-ID: <${ports.now().getTime().toString(36)}.${randomBytes(8).toString("hex")}@${settings.hostname}>\r\n`;
    }
    if (authUser !== null) {
      // The sender checks bind a login on every listener (README: "an authenticated user may only
      // use its own addresses"); issue 11.2 found port 25 skipping them. Every From: and Sender:
      // field is checked (a second one must not slip past); a header section too large to read
      // whole could hide one after the limit, a NUL or a disguised name could show one to another
      // parser that we do not see: refuse those rather than guess.
      for (const f of own.fields) {
        const lower = f.name.toLowerCase();
        if (lower === "from") this.senderFields.push({ name: "From", value: f.value });
        else if (lower === "sender") this.senderFields.push({ name: "Sender", value: f.value });
      }
      if (info.truncated) this.refuse(reply(552, "5.3.4", "Error: message header section too large"), "header section over the headerBytes limit");
      if (!startsWithSpace && own.nul) this.refuse(reply(550, "5.6.0", "Error: NUL byte in the message header section"), "NUL in the header section");
      const disguised = startsWithSpace ? undefined : own.disguised.find((n) => n === "from" || n === "sender");
      if (disguised !== undefined)
        this.refuse(reply(550, "5.6.0", `Error: malformed ${disguised === "from" ? "From:" : "Sender:"} header field`), `malformed ${disguised} field name`);
    }
    // End our header section before such content, as Postfix's smtpd does.
    if (startsWithSpace) top += "\r\n";
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
    const { ports, tx, authUser } = this.ctx;
    if (!error) this.write(this.headers.finish());
    await this.pending;
    let refusal = this.refusal;
    if (error !== undefined) refusal = dataErrorRefusal(error);
    else if (this.writeError !== undefined) refusal = { reply: storageErrorReply(this.writeError), reason: `spool write failed: ${String(this.writeError)}` };
    if (!refusal && authUser) refusal = this.checkSenderFields(tx.account);
    let headerPrefix: string | undefined;
    let stepLog: Record<string, unknown> | undefined;
    if (!refusal && this.content) {
      const outcome = await this.content.finish();
      if (outcome.ok) ({ headerPrefix, logFields: stepLog } = outcome);
      else if ("refusal" in outcome) refusal = outcome.refusal;
      else {
        ports.log.warn({ event: "content-step-error", step: outcome.step, err: String(outcome.error) }, "content step failed");
        refusal = { reply: reply(451, "4.3.0", "Error: local error in processing the message"), reason: `content step ${outcome.step} failed` };
      }
    }
    if (refusal) {
      await this.abort();
      ports.log.info({ event: "data-refused", from: tx.sender.address, reason: refusal.reason }, "message refused");
      return { output: { replies: [refusal.reply], action: refusal.close ? "close" : undefined }, queued: false };
    }
    const envelope = this.envelope();
    if (headerPrefix !== undefined) envelope.headerPrefix = headerPrefix;
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
      {
        ...stepLog,
        event: "queued",
        id,
        from: tx.sender.address,
        to: tx.recipients.map((r) => r.address),
        size: this.writer.bytesWritten,
        requireTls: envelope.requireTls,
        tlsRequiredNo: envelope.tlsRequiredNo,
      },
      "message queued",
    );
    ports.queued(id, envelope);
    if (authUser) void ports.sendLimits?.sent(authUser, tx.recipients.length);
    return { output: { replies: [reply(250, "2.0.0", `Ok: queued as ${id}`)] }, queued: true };
  }

  /**
   * The login must own every address in From: and Sender: (RFC 5322 §3.6.2: Sender: names who
   * sent it, so it is as much a claim as From:). Fails closed: a login without an account owns no
   * address. Each field goes to the policy on its own, exactly as a next hop will read it.
   */
  private checkSenderFields(account: SenderAccount | null): Refusal | undefined {
    const { ports, tx } = this.ctx;
    const sender = tx.sender.address;
    if (!account) return { reply: reply(553, "5.7.1", "From: header address rejected: login has no mailbox"), reason: "login has no account" };
    if (!this.senderFields.some((f) => f.name === "From")) {
      const none = ports.checkFromHeader(account, undefined, sender);
      if (!none.allow) return none;
    }
    for (const f of this.senderFields) {
      const check = ports.checkFromHeader(account, f.value, sender);
      if (!check.allow) return f.name === "From" ? check : asSenderRefusal(check);
    }
    return undefined;
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
      senderVouched: tx.senderVouched,
      // RFC 8689 §4.1: the message is tagged; delivery and the bounce generator read the tags.
      requireTls: tx.params.requireTls || undefined,
      tlsRequiredNo: this.tlsRequiredNo || undefined,
      recipients: tx.recipients,
    };
  }

  /** Removes everything written; waits for writes in flight first. Safe to call twice. */
  async abort(): Promise<void> {
    this.content?.abort();
    await this.pending;
    await this.writer.abort().catch(() => undefined);
  }
}

/** The policy words its From: refusals; the same refusal for a Sender: field names that field. */
function asSenderRefusal(check: Extract<Decision, { allow: false }>): Refusal {
  const relabel = (text: string) => text.replace(/From: header/g, "Sender: header");
  return { reply: { ...check.reply, lines: check.reply.lines.map(relabel) }, reason: relabel(check.reason) };
}

/** What the checks read when the client's lines are body to every next hop. */
export const NO_FIELDS: HeaderInfo = {
  fields: [],
  truncated: false,
  malformed: false,
  nul: false,
  disguised: [],
  get: () => undefined,
  getAll: () => [],
  count: () => 0,
};

/** RFC 3463: a full disk is 4.3.1 "mail system full" (452, RFC 5321 §4.2.2); any other failure 4.3.0. */
export function storageErrorReply(err: unknown): Reply {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOSPC" || code === "EDQUOT") return reply(452, "4.3.1", "Error: insufficient system storage");
  return reply(451, "4.3.0", "Error: queue file write error");
}
