/**
 * The SMTP session as a state machine (DESIGN principle 1). It receives command lines and DATA
 * bytes, answers with replies and asks its ports (SASL, policy, spool) for decisions. It never
 * touches a socket, a file or the clock: the connection layer does the I/O.
 */
import { randomBytes } from "node:crypto";
import { reply, type Reply } from "./reply.js";
import { parseCommand, type ParsedCommand } from "./command.js";
import { parseMailParams, parseRcptParams, parsePath, type MailPath, type MailParams } from "./address.js";
import { DataReader, type DataError } from "./data-reader.js";
import type { ChunkState } from "./bdat.js";
import { HeaderCollector, type HeaderInfo } from "./headers.js";
import { buildReceivedHeader, rfc5322Date } from "./trace.js";
import { AuthExchange, type AuthResult } from "./auth-exchange.js";
import type { EnvelopeRecipient, NewEnvelope, SpoolWriter } from "../queue/types.js";

import type {
  ConnectionFacts,
  Expecting,
  PolicyContext,
  SessionOutput,
  SessionPorts,
  SessionSettings,
} from "./session-types.js";

export * from "./session-types.js";

interface Transaction {
  sender: MailPath;
  params: MailParams;
  recipients: Pick<EnvelopeRecipient, "address" | "notify" | "orcpt">[];
  refusedRecipients: number;
}

interface DataPhase {
  writer: SpoolWriter;
  reader: DataReader;
  headers: HeaderCollector;
  refusal?: { reply: Reply; reason: string };
  /** Writes in flight are chained so the spool sees bytes in order. */
  pending: Promise<void>;
  writeError?: unknown;
  /** The From: header of submitted mail, checked against the login at the end of DATA. */
  fromHeader?: string;
  /** The message's first byte: white space there would fold into our Received: field. */
  firstByte?: number;
}

export class Session {
  private helo: string | null = null;
  private esmtp = false;
  private authUser: string | null = null;
  private transaction: Transaction | null = null;
  private dataPhase: DataPhase | null = null;
  /** CHUNKING (RFC 3030): the message being received in BDAT chunks, and the chunk being read. */
  private chunkPhase: DataPhase | null = null;
  private chunk: ChunkState | null = null;
  private errors = 0;
  private junk = 0;
  private closed = false;

  private readonly authExchange: AuthExchange;

  constructor(
    private readonly settings: SessionSettings,
    private readonly ports: SessionPorts,
    private facts: ConnectionFacts,
  ) {
    this.authExchange = new AuthExchange(settings, ports, (text) => this.closing(text));
  }

  get expecting(): Expecting {
    if (this.chunk) return "chunk";
    if (this.dataPhase) return "data";
    return this.authExchange.active ? "auth-response" : "command";
  }

  /** Line limit for the next line the connection reads (RFC 5321 §4.5.3.1.4, RFC 4954 §4). */
  get lineLimit(): number {
    return this.authExchange.active ? this.settings.limits.authLineLength : this.settings.limits.commandLineLength;
  }

  get authenticatedUser(): string | null {
    return this.authUser;
  }

  /** A MAIL transaction or DATA is under way: a shutdown waits for it (src/server/connection.ts). */
  get inTransaction(): boolean {
    return this.transaction !== null || this.dataPhase !== null;
  }

  /** Errors and junk commands counted so far (the connection layer's tarpit reads them). */
  get penaltyCounts(): { errors: number; junk: number } {
    return { errors: this.errors, junk: this.junk };
  }

  greeting(): Reply {
    return reply(220, undefined, `${this.settings.hostname} ${this.settings.banner}`);
  }

  /** RFC 3207 §4.2: after the handshake, forget everything learned before it. */
  tlsStarted(tls: { version: string; cipher: string }): void {
    this.facts = { ...this.facts, tls };
    this.helo = null;
    this.esmtp = false;
    this.authUser = null;
    this.authExchange.cancel();
    this.dropChunks();
    this.transaction = null;
  }

  /** A line the connection layer could not take (too long, bare CR/LF). */
  lineError(kind: "too-long" | "bare-lf" | "bare-cr"): SessionOutput {
    this.authExchange.cancel();
    const text =
      kind === "too-long" ? "Error: line too long" : "Error: bare CR or LF in command; lines must end with CRLF";
    this.ports.log.warn({ event: "protocol-error", kind }, "bad command line");
    return { replies: [reply(500, "5.5.2", text)], action: "close" };
  }

  /** Client spoke out of turn (pipelined behind STARTTLS or DATA, or before the greeting). */
  outOfSync(after: string): SessionOutput {
    this.ports.log.warn({ event: "protocol-error", kind: "out-of-sync", after }, "client pipelined out of turn");
    return { replies: [reply(554, "5.5.0", `Error: SMTP protocol synchronization (data sent after ${after})`)], action: "close" };
  }

  async handleLine(line: Buffer): Promise<SessionOutput> {
    if (this.closed) return { replies: [] };
    const out = this.authExchange.active
      ? await this.authResult(await this.authExchange.respond(line))
      : await this.command(parseCommand(line));
    return this.countErrors(out);
  }

  private countErrors(out: SessionOutput): SessionOutput {
    if (out.action === "close") {
      this.closed = true;
      return out;
    }
    // 452 4.5.3 (recipients past the limit) is flow control, not a client error: the client sends
    // those in a later transaction (RFC 5321 §4.5.3.1.10); counting them would end a pipelined
    // transaction, and every retry of it, with 421.
    for (const r of out.replies) if (r.code >= 400 && r.code !== 421 && r.enhanced !== "4.5.3") this.errors++;
    if (this.errors >= this.settings.limits.errors) {
      this.ports.log.warn({ event: "limit", limit: "errors", count: this.errors }, "too many errors");
      this.closed = true;
      return { replies: [...out.replies, this.closing("Error: too many errors")], action: "close" };
    }
    return out;
  }

  private closing(text: string): Reply {
    return reply(421, "4.7.0", `${this.settings.hostname} ${text}`);
  }

  private junkCommand(r: Reply): SessionOutput {
    if (++this.junk > this.settings.limits.junkCommands) {
      this.ports.log.warn({ event: "limit", limit: "junkCommands", count: this.junk }, "too many junk commands");
      return { replies: [this.closing("Error: too many junk commands")], action: "close" };
    }
    return { replies: [r] };
  }

  private async command(cmd: ParsedCommand): Promise<SessionOutput> {
    switch (cmd.kind) {
      case "error":
        return { replies: [cmd.reply] };
      case "EHLO":
      case "HELO":
        return { replies: [this.hello(cmd.kind, cmd.domain)] };
      case "STARTTLS":
        return this.startTls();
      case "AUTH":
        return this.auth(cmd.mechanism, cmd.initialResponse);
      case "MAIL":
        return { replies: [await this.mail(cmd.path, cmd.params)] };
      case "RCPT":
        return { replies: [await this.rcpt(cmd.path, cmd.params)] };
      case "DATA":
        // RFC 3030 §3: BDAT and DATA do not mix in one transaction.
        if (this.chunkPhase) return { replies: [reply(503, "5.5.1", "Error: DATA not allowed after BDAT")] };
        return this.data();
      case "BDAT":
        return this.bdat(cmd.size, cmd.last);
      case "RSET":
        this.dropChunks();
        this.transaction = null;
        return this.junkCommand(reply(250, "2.0.0", "Ok"));
      case "NOOP":
        return this.junkCommand(reply(250, "2.0.0", "Ok"));
      case "QUIT":
        return { replies: [reply(221, "2.0.0", "Bye")], action: "close" };
      case "VRFY":
        // RFC 5321 §3.5.3 / §7.3: never confirm or deny a mailbox (no user enumeration).
        return this.junkCommand(reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery"));
      case "EXPN":
        return this.junkCommand(reply(502, "5.5.1", "Error: EXPN is disabled"));
      case "HELP":
        return this.junkCommand(reply(214, "2.0.0", "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP QUIT VRFY HELP"));
      case "HTTP":
        // SECURITY.md rule 5: cross-protocol requests end the connection.
        this.ports.log.warn({ event: "protocol-error", kind: "http" }, "HTTP request on an SMTP port");
        return { replies: [cmd.reply], action: "close" };
      case "UNKNOWN":
        return { replies: [cmd.reply] };
    }
  }

  // ---- EHLO / HELO ------------------------------------------------------------------------

  private hello(kind: "EHLO" | "HELO", domain: string): Reply {
    // RFC 5321 §4.1.4: EHLO/HELO resets any transaction in progress.
    this.dropChunks();
    this.transaction = null;
    this.helo = domain;
    this.esmtp = kind === "EHLO";
    const first = `${this.settings.hostname} Hello ${domain} [${this.facts.remoteIp}]`;
    if (kind === "HELO") return reply(250, undefined, first);
    const ext = [
      "PIPELINING",
      `SIZE ${this.settings.limits.messageSize}`,
      "8BITMIME",
      "ENHANCEDSTATUSCODES",
      "SMTPUTF8",
      "DSN",
      "CHUNKING",
    ];
    if (this.settings.tlsAvailable && !this.facts.tls) ext.push("STARTTLS");
    if (this.authOffered()) {
      const mechs = this.ports.mechanisms();
      if (mechs.length > 0) ext.push(`AUTH ${mechs.join(" ")}`);
    }
    return reply(250, undefined, first, ...ext);
  }

  private authOffered(): boolean {
    if (!this.settings.authEnabled || this.authUser) return false;
    return this.facts.tls !== undefined || this.settings.authWithoutTls;
  }

  // ---- STARTTLS (RFC 3207) ------------------------------------------------------------------

  private startTls(): SessionOutput {
    if (this.facts.tls) return { replies: [reply(554, "5.5.1", "Error: TLS already active")] };
    if (!this.settings.tlsAvailable) return { replies: [reply(502, "5.5.1", "Error: STARTTLS not available")] };
    if (!this.helo) return { replies: [reply(503, "5.5.1", "Error: send EHLO first")] };
    return { replies: [reply(220, "2.0.0", "Ready to start TLS")], action: "starttls" };
  }

  // ---- AUTH (RFC 4954) ------------------------------------------------------------------------

  private async auth(mechanismName: string, initial: string | undefined): Promise<SessionOutput> {
    if (!this.helo || !this.esmtp) return { replies: [reply(503, "5.5.1", "Error: send EHLO first")] };
    if (!this.facts.tls && !this.settings.authWithoutTls) {
      this.ports.log.warn({ event: "auth-refused", reason: "no-tls" }, "AUTH before TLS refused");
      // SECURITY.md rule 9: never take a password in clear; tell the client where to go.
      if (this.settings.mode === "mta")
        return { replies: [reply(503, "5.5.1", "Error: AUTH not available here; use port 587 (STARTTLS) or 465")] };
      return { replies: [reply(530, "5.7.0", "Must issue a STARTTLS command first")] };
    }
    if (!this.settings.authEnabled)
      return { replies: [reply(503, "5.5.1", "Error: AUTH not available here; use port 587 (STARTTLS) or 465")] };
    if (this.authUser) return { replies: [reply(503, "5.5.1", "Error: already authenticated")] };
    if (this.transaction) return { replies: [reply(503, "5.5.1", "Error: AUTH not permitted during a mail transaction")] };
    const result = await this.authExchange.begin(mechanismName, initial);
    return this.authResult(result);
  }

  private async authResult(result: AuthResult): Promise<SessionOutput> {
    if (result.user !== undefined) {
      // Mechanisms return the login as typed; sender checks and logs need the store's spelling.
      const account = await this.ports.account(result.user).catch(() => null);
      this.authUser = account?.address ?? result.user;
    }
    return result.output;
  }

  // ---- MAIL / RCPT ------------------------------------------------------------------------------

  private policyContext(): PolicyContext {
    return { ip: this.facts.remoteIp, mode: this.settings.mode, authUser: this.authUser ?? undefined };
  }

  /** RFC 6409 §4.3 / RFC 3207 §4: the submission ports take mail only over TLS and after AUTH. */
  private submissionGate(): Reply | null {
    if (this.settings.mode === "mta") return null;
    if (!this.facts.tls && !this.settings.authWithoutTls) return reply(530, "5.7.0", "Must issue a STARTTLS command first");
    if (!this.authUser) return reply(530, "5.7.0", "Authentication required");
    return null;
  }

  private async mail(pathText: string, paramText: string): Promise<Reply> {
    if (!this.helo) return reply(503, "5.5.1", "Error: send HELO/EHLO first");
    if (this.transaction) return reply(503, "5.5.1", "Error: nested MAIL command");
    const gate = this.submissionGate();
    if (gate) {
      this.ports.log.info({ event: "mail-refused", reason: gate.lines[0] }, "MAIL refused");
      return gate;
    }
    const parsedParams = parseMailParams(paramText, {
      size: this.esmtp,
      eightBitMime: this.esmtp,
      smtputf8: this.esmtp,
      dsn: this.esmtp,
      // RFC 4954 §5: AUTH= stays valid after AUTH succeeded (when EHLO no longer lists AUTH).
      auth: this.esmtp && (this.authUser !== null || this.authOffered()),
    });
    if (!parsedParams.ok) return parsedParams.reply;
    const params = parsedParams.value;
    const path = parsePath(pathText, { allowNull: true, allowUtf8: params.smtputf8 === true, role: "sender" });
    if (!path.ok) return path.reply;
    if (params.size !== undefined && params.size > this.settings.limits.messageSize) {
      // RFC 1870 §6.2
      return reply(552, "5.3.4", "Message size exceeds fixed maximum message size");
    }
    const account = this.authUser ? await this.ports.account(this.authUser) : null;
    const limited = this.authUser ? this.ports.sendLimits?.checkMessage(this.authUser) : undefined;
    const decision = limited && !limited.allow ? limited : await this.ports.checkSender(this.policyContext(), path.path, account);
    if (!decision.allow) {
      this.ports.log.info({ event: "mail-refused", from: path.path.address, reason: decision.reason }, "MAIL refused");
      return decision.reply;
    }
    this.transaction = { sender: path.path, params, recipients: [], refusedRecipients: 0 };
    this.ports.log.info({ event: "mail", from: path.path.address, size: params.size }, "MAIL accepted");
    return reply(250, "2.1.0", "Ok");
  }

  private async rcpt(pathText: string, paramText: string): Promise<Reply> {
    const tx = this.transaction;
    if (!tx) return reply(503, "5.5.1", "Error: need MAIL command");
    if (tx.recipients.length >= this.settings.limits.recipients) {
      return reply(452, "4.5.3", "Error: too many recipients"); // RFC 5321 §4.5.3.1.10
    }
    const parsedParams = parseRcptParams(paramText, { dsn: this.esmtp });
    if (!parsedParams.ok) return parsedParams.reply;
    const path = parsePath(pathText, { allowNull: false, allowUtf8: tx.params.smtputf8 === true, role: "recipient" });
    if (!path.ok) return path.reply;
    const limited = this.authUser ? this.ports.sendLimits?.checkRecipient(this.authUser, tx.recipients.length) : undefined;
    const decision = limited && !limited.allow ? limited : await this.ports.checkRecipient(this.policyContext(), path.path);
    if (!decision.allow) {
      tx.refusedRecipients++;
      this.ports.log.info(
        { event: "rcpt-refused", from: tx.sender.address, to: path.path.address, reason: decision.reason },
        "RCPT refused",
      );
      return decision.reply;
    }
    // A bare "<Postmaster>" is delivered as the postmaster of our primary domain.
    const address = path.path.barePostmaster ? this.settings.postmaster : (decision.address ?? path.path.address);
    // Local parts are case-sensitive (RFC 5321 §2.4); the parser already lower-cased the domain.
    if (!tx.recipients.some((r) => r.address === address)) {
      tx.recipients.push({ address, notify: parsedParams.value.notify, orcpt: parsedParams.value.orcpt });
    }
    this.ports.log.info({ event: "rcpt", from: tx.sender.address, to: address, note: decision.note }, "RCPT accepted");
    return reply(250, "2.1.5", "Ok");
  }

  // ---- DATA ------------------------------------------------------------------------------------

  private async data(): Promise<SessionOutput> {
    const tx = this.transaction;
    if (!tx) return { replies: [reply(503, "5.5.1", "Error: need MAIL command")] };
    if (tx.recipients.length === 0) {
      return {
        replies: [
          tx.refusedRecipients > 0
            ? reply(554, "5.5.1", "Error: no valid recipients")
            : reply(503, "5.5.1", "Error: need RCPT command"),
        ],
      };
    }
    let writer: SpoolWriter;
    try {
      writer = await this.ports.openSpool();
    } catch (err) {
      this.ports.log.warn({ event: "spool-error", err: String(err) }, "cannot open spool file");
      return { replies: [storageErrorReply(err)] };
    }
    const headers = new HeaderCollector({ maxHeaderBytes: this.settings.limits.headerBytes });
    const phase: DataPhase = {
      writer,
      reader: new DataReader({
        maxLineLength: this.settings.limits.textLineLength,
        maxMessageSize: this.settings.limits.messageSize,
        bareLineEnds: this.settings.bareLineEnds,
      }),
      headers,
      pending: Promise.resolve(),
    };
    headers.setHeaderEndHook((info) => this.headerSectionDone(phase, tx, info));
    this.dataPhase = phase;
    return { replies: [reply(354, undefined, "End data with <CR><LF>.<CR><LF>")] };
  }

  /**
   * Raw bytes from the socket while in DATA. Resolves to null while the message goes on, or to
   * the final reply and the bytes that followed the terminating dot.
   */
  async receiveData(chunk: Buffer): Promise<{ output: SessionOutput; rest?: Buffer } | null> {
    const phase = this.dataPhase!;
    const pushed = phase.reader.push(chunk);
    for (const piece of pushed.data) {
      if (phase.firstByte === undefined && piece.length > 0) phase.firstByte = piece[0];
      this.store(phase, phase.headers.push(piece));
    }
    if (!pushed.done) {
      await phase.pending; // back-pressure: the socket is read again only once the spool took the bytes
      return null;
    }
    if (!pushed.error) this.store(phase, phase.headers.finish());
    const output = this.countErrors(await this.finishData(phase, pushed.error));
    return { output, rest: pushed.rest };
  }

  private store(phase: DataPhase, pieces: Buffer[]): void {
    for (const piece of pieces) {
      if (piece.length === 0) continue;
      phase.pending = phase.pending.then(() => phase.writer.write(piece)).catch((err) => {
        phase.writeError ??= err;
      });
    }
  }

  /** Called once, when the header section is complete: checks it and returns what goes on top. */
  private headerSectionDone(phase: DataPhase, tx: Transaction, info: HeaderInfo): Buffer {
    if (info.count("received") >= this.settings.limits.maxReceivedHeaders) {
      // RFC 5321 §6.3: a mail loop.
      phase.refusal ??= { reply: reply(554, "5.4.6", "Error: too many hops (mail loop?)"), reason: "mail loop" };
    }
    const submitted = this.settings.mode !== "mta" && this.authUser !== null;
    let top = buildReceivedHeader({
      heloName: this.helo ?? "unknown",
      clientIp: this.facts.remoteIp,
      hostname: this.settings.hostname,
      protocol: this.protocolName(),
      queueId: phase.writer.id,
      tls: this.facts.tls,
      recipient: tx.recipients.length === 1 ? tx.recipients[0]!.address : undefined,
      date: this.ports.now(),
    });
    if (submitted) {
      // RFC 6409 §8.2, §8.3: the MSA adds Date and Message-ID when the client left them out.
      if (info.get("date") === undefined) top += `Date: ${rfc5322Date(this.ports.now())}\r\n`;
      if (info.get("message-id") === undefined)
        top += `Message-ID: <${this.ports.now().getTime().toString(36)}.${randomBytes(8).toString("hex")}@${this.settings.hostname}>\r\n`;
      // Every From: field is checked (a second one must not slip past), and a header section too
      // large to inspect whole could hide one after the limit: refuse it rather than guess.
      const froms = info.getAll("from");
      phase.fromHeader = froms.length > 0 ? froms.join(", ") : undefined;
      if (info.truncated) {
        phase.refusal ??= { reply: reply(552, "5.3.4", "Error: message header section too large"), reason: "header section over the headerBytes limit" };
      }
    }
    // Content starting with white space would continue our last field (client text in our trace
    // header, SECURITY.md rule 19): end our header section first, as Postfix's smtpd does.
    if (phase.firstByte === 0x20 || phase.firstByte === 0x09) top += "\r\n";
    return Buffer.from(top, "utf8");
  }

  /** RFC 3848 protocol names. */
  private protocolName(): string {
    if (!this.esmtp) return "SMTP";
    return `ESMTP${this.facts.tls ? "S" : ""}${this.authUser ? "A" : ""}`;
  }

  private async finishData(phase: DataPhase, error: DataError | undefined): Promise<SessionOutput> {
    const tx = this.transaction!;
    this.dataPhase = null;
    this.transaction = null;
    await phase.pending;
    let refusal: { reply: Reply; reason: string; close?: boolean } | undefined = phase.refusal;
    if (error === "bare-line-end") {
      // SECURITY.md rule 1 (CVE-2023-51764 and kin): never a line end, never a message end.
      refusal = { reply: reply(521, "5.5.2", "Error: bare CR or LF received in message data"), reason: "bare CR/LF in DATA", close: true };
    } else if (error === "too-big") {
      refusal = { reply: reply(552, "5.3.4", "Message size exceeds fixed maximum message size"), reason: "message too big" };
    } else if (error === "line-too-long") {
      refusal = { reply: reply(500, "5.5.2", "Error: message line too long (RFC 5321 §4.5.3.1.6)"), reason: "line too long" };
    } else if (phase.writeError !== undefined) {
      refusal = { reply: storageErrorReply(phase.writeError), reason: `spool write failed: ${String(phase.writeError)}` };
    }
    if (!refusal && this.settings.mode !== "mta" && this.authUser) {
      const account = await this.ports.account(this.authUser);
      // Fail closed: a login without an account owns no address.
      const check = account
        ? this.ports.checkFromHeader(account, phase.fromHeader)
        : { allow: false as const, reply: reply(553, "5.7.1", "From: header address rejected: login has no mailbox"), reason: "login has no account" };
      if (!check.allow) refusal = check;
    }
    if (refusal) {
      await phase.writer.abort().catch(() => undefined);
      this.ports.log.info({ event: "data-refused", from: tx.sender.address, reason: refusal.reason }, "message refused");
      return { replies: [refusal.reply], action: refusal.close ? "close" : undefined };
    }
    const envelope: NewEnvelope = {
      mailFrom: tx.sender.address,
      body: tx.params.body,
      smtputf8: tx.params.smtputf8,
      ret: tx.params.ret,
      envid: tx.params.envid,
      client: {
        ip: this.facts.remoteIp,
        helo: this.helo ?? "",
        listener: this.settings.mode,
        authUser: this.authUser ?? undefined,
        tls: this.facts.tls,
      },
      recipients: tx.recipients,
    };
    let id: string;
    try {
      // SECURITY.md rule 16: 250 only once data and envelope are durable.
      id = await phase.writer.commit(envelope);
    } catch (err) {
      await phase.writer.abort().catch(() => undefined);
      this.ports.log.warn({ event: "spool-error", err: String(err) }, "queue commit failed");
      return { replies: [storageErrorReply(err)] };
    }
    this.ports.log.info(
      { event: "queued", id, from: tx.sender.address, to: tx.recipients.map((r) => r.address), size: phase.writer.bytesWritten },
      "message queued",
    );
    this.ports.queued(id, envelope);
    if (this.authUser) this.ports.sendLimits?.sent(this.authUser, tx.recipients.length);
    // A delivered message forgives earlier errors and junk commands (as Postfix's smtpd does).
    this.errors = 0;
    this.junk = 0;
    return { replies: [reply(250, "2.0.0", `Ok: queued as ${id}`)] };
  }

  // ---- BDAT (RFC 3030) ---------------------------------------------------------------------------

  /** Octets the connection must hand to receiveChunk next (0 unless expecting "chunk"). */
  get chunkRemaining(): number {
    return this.chunk?.remaining ?? 0;
  }

  private async bdat(size: number, last: boolean): Promise<SessionOutput> {
    const tx = this.transaction;
    let refusal: Reply | undefined;
    if (!tx) refusal = reply(503, "5.5.1", "Error: need MAIL command");
    else if (tx.recipients.length === 0) refusal = tx.refusedRecipients > 0 ? reply(554, "5.5.1", "Error: no valid recipients") : reply(503, "5.5.1", "Error: need RCPT command");
    if (!refusal && !this.chunkPhase) {
      const opened = await this.data(); // the same spool, header checks and limits as DATA
      if (opened.replies[0]?.code !== 354) refusal = opened.replies[0];
      else [this.chunkPhase, this.dataPhase] = [this.dataPhase, null];
    }
    // RFC 3030 §2: even a refused BDAT is followed by its octets; they are read and dropped.
    this.chunk = { remaining: size, last, refusal };
    return size === 0 ? this.chunkDone() : { replies: [] };
  }

  /** At most chunkRemaining octets of the current chunk; resolves to the reply once it is complete. */
  async receiveChunk(bytes: Buffer): Promise<SessionOutput | null> {
    const chunk = this.chunk!;
    chunk.remaining -= bytes.length;
    const phase = this.chunkPhase;
    if (phase && !chunk.refusal && !phase.refusal) {
      if (phase.writer.bytesWritten + bytes.length > this.settings.limits.messageSize) {
        phase.refusal = { reply: reply(552, "5.3.4", "Message size exceeds fixed maximum message size"), reason: "message too big" };
      } else {
        if (phase.firstByte === undefined && bytes.length > 0) phase.firstByte = bytes[0];
        this.store(phase, phase.headers.push(bytes));
      }
    }
    if (chunk.remaining > 0) {
      if (phase) await phase.pending; // back-pressure, as in DATA
      return null;
    }
    return this.countErrors(await this.chunkDone());
  }

  private async chunkDone(): Promise<SessionOutput> {
    const chunk = this.chunk!;
    this.chunk = null;
    if (chunk.refusal) return { replies: [chunk.refusal] };
    const phase = this.chunkPhase!;
    if (phase.refusal?.reply.code === 552) {
      // Too big: the transaction is over; the client sends RSET or starts again (RFC 3030 §4.2).
      this.dropChunks();
      this.transaction = null;
      return { replies: [phase.refusal.reply] };
    }
    if (!chunk.last) return { replies: [reply(250, "2.0.0", "Ok: chunk received")] };
    this.chunkPhase = null;
    this.store(phase, phase.headers.finish());
    return this.finishData(phase, undefined);
  }

  /** Forgets a half-received chunked message and removes its spool file. */
  private dropChunks(): void {
    const phase = this.chunkPhase;
    this.chunkPhase = null;
    this.chunk = null;
    if (phase) void phase.pending.then(() => phase.writer.abort()).catch(() => undefined);
  }

  /** The connection ended (or failed) mid-session: nothing half-received may survive. */
  async abort(): Promise<void> {
    this.closed = true;
    this.dropChunks();
    const phase = this.dataPhase;
    this.dataPhase = null;
    this.authExchange.cancel();
    if (phase) {
      await phase.pending;
      await phase.writer.abort().catch(() => undefined);
    }
  }
}

/** RFC 3463: a full disk is 4.3.1 "mail system full" (452, RFC 5321 §4.2.2); any other failure 4.3.0. */
function storageErrorReply(err: unknown): Reply {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOSPC" || code === "EDQUOT") return reply(452, "4.3.1", "Error: insufficient system storage");
  return reply(451, "4.3.0", "Error: queue file write error");
}

export function newSessionId(): string {
  return randomBytes(6).toString("hex");
}
