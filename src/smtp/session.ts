/**
 * The SMTP session as a state machine (DESIGN principle 1). It receives command lines and DATA
 * bytes, answers with replies and asks its ports (SASL, policy, spool) for decisions. It never
 * touches a socket, a file or the clock: the connection layer does the I/O.
 */
import { randomBytes } from "node:crypto";
import { reply, type Reply } from "./reply.js";
import { parseCommand, type ParsedCommand } from "./command.js";
import { parseMailParams, parseRcptParams, parsePath } from "./address.js";
import { DataReader, type DataError } from "./data-reader.js";
import { ChunkTextReader, type ChunkState } from "./bdat.js";
import { AuthExchange, type AuthResult } from "./auth-exchange.js";
import { MessageIntake, dataErrorRefusal, type Transaction } from "./message-intake.js";
import type {
  ConnectionFacts,
  Expecting,
  PolicyContext,
  SessionOutput,
  SessionPorts,
  SessionSettings,
} from "./session-types.js";

export * from "./session-types.js";

/** DATA: the dot-stuffed wire format is read by a DataReader and fed to the intake. */
interface DataPhase {
  intake: MessageIntake;
  reader: DataReader;
}

/** BDAT: chunks go through the same text rules as DATA (line ends, line length) to the intake. */
interface ChunkPhase {
  intake: MessageIntake;
  reader: ChunkTextReader;
  /** Too big or a line too long: the rest is read and dropped, the chunk answered with this. */
  failed?: { reply: Reply; reason: string };
}

export class Session {
  private helo: string | null = null;
  private esmtp = false;
  private authUser: string | null = null;
  private transaction: Transaction | null = null;
  private dataPhase: DataPhase | null = null;
  /** CHUNKING (RFC 3030): the message being received in BDAT chunks, and the chunk being read. */
  private chunked: ChunkPhase | null = null;
  private chunk: ChunkState | null = null;
  private errors = 0;
  private junk = 0;
  private closed = false;
  /** The command just handled must end its pipelined group (see groupEnd). */
  private endsGroup: "EHLO" | "HELO" | null = null;

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

  /**
   * RFC 2920 §3.1: EHLO (and HELO) end a group: a client may send nothing more before their reply.
   * Set after such a command; the connection refuses bytes already buffered behind it (SECURITY.md
   * rule 4, Postfix's smtpd_forbid_unauth_pipelining; issue 11.11).
   */
  get groupEnd(): "EHLO" | "HELO" | null {
    return this.endsGroup;
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
    this.endsGroup = null;
    if (this.closed) return { replies: [] };
    if (!this.authExchange.active) this.endsGroup = helloVerb(line);
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
        if (this.chunked) return { replies: [reply(503, "5.5.1", "Error: DATA not allowed after BDAT")] };
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
    // Decided now, with the other sender checks, and kept in the envelope for the bounce generator.
    const ctx = this.policyContext();
    const senderVouched = this.ports.senderVouched ? this.ports.senderVouched(ctx) : ctx.authUser !== undefined;
    this.transaction = { sender: path.path, params, recipients: [], refusedRecipients: 0, account, senderVouched };
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

  /** Why no message may start now (DATA or the first BDAT), or null. */
  private messageGate(): Reply | null {
    const tx = this.transaction;
    if (!tx) return reply(503, "5.5.1", "Error: need MAIL command");
    if (tx.recipients.length > 0) return null;
    return tx.refusedRecipients > 0 ? reply(554, "5.5.1", "Error: no valid recipients") : reply(503, "5.5.1", "Error: need RCPT command");
  }

  private async openIntake(): Promise<MessageIntake | Reply> {
    return MessageIntake.open({
      settings: this.settings,
      ports: this.ports,
      facts: this.facts,
      helo: this.helo,
      esmtp: this.esmtp,
      authUser: this.authUser,
      tx: this.transaction!,
    });
  }

  private async data(): Promise<SessionOutput> {
    const gate = this.messageGate();
    if (gate) return { replies: [gate] };
    const intake = await this.openIntake();
    if (!(intake instanceof MessageIntake)) return { replies: [intake] };
    const reader = new DataReader({
      maxLineLength: this.settings.limits.textLineLength,
      maxMessageSize: this.settings.limits.messageSize,
      bareLineEnds: this.settings.bareLineEnds,
    });
    this.dataPhase = { intake, reader };
    return { replies: [reply(354, undefined, "End data with <CR><LF>.<CR><LF>")] };
  }

  /**
   * Raw bytes from the socket while in DATA. Resolves to null while the message goes on, or to
   * the final reply and the bytes that followed the terminating dot.
   */
  async receiveData(chunk: Buffer): Promise<{ output: SessionOutput; rest?: Buffer } | null> {
    const { intake, reader } = this.dataPhase!;
    const pushed = reader.push(chunk);
    for (const piece of pushed.data) intake.add(piece);
    if (!pushed.done) {
      await intake.written(); // back-pressure: the socket is read again only once the spool took the bytes
      return null;
    }
    this.dataPhase = null;
    return { output: this.countErrors(await this.finishMessage(intake, pushed.error)), rest: pushed.rest };
  }

  private async finishMessage(intake: MessageIntake, error?: DataError): Promise<SessionOutput> {
    this.transaction = null;
    const { output, queued } = await intake.finish(error);
    if (queued) {
      // A delivered message forgives earlier errors and junk commands (as Postfix's smtpd does).
      this.errors = 0;
      this.junk = 0;
    }
    return output;
  }

  // ---- BDAT (RFC 3030) ---------------------------------------------------------------------------

  /** Octets the connection must hand to receiveChunk next (0 unless expecting "chunk"). */
  get chunkRemaining(): number {
    return this.chunk?.remaining ?? 0;
  }

  private async bdat(size: number, last: boolean): Promise<SessionOutput> {
    let refusal = this.chunked ? null : this.messageGate();
    if (!refusal && !this.chunked) {
      // The same spool, header checks, line rules and limits as DATA (SECURITY.md rule 1).
      const intake = await this.openIntake();
      if (intake instanceof MessageIntake) {
        const reader = new ChunkTextReader({ maxLineLength: this.settings.limits.textLineLength, bareLineEnds: this.settings.bareLineEnds });
        this.chunked = { intake, reader };
      } else {
        refusal = intake;
      }
    }
    // RFC 3030 §2: even a refused BDAT is followed by its octets; they are read and dropped.
    this.chunk = { remaining: size, last, refusal: refusal ?? undefined };
    return size === 0 ? this.chunkDone() : { replies: [] };
  }

  /** At most chunkRemaining octets of the current chunk; resolves to the reply once it is complete. */
  async receiveChunk(bytes: Buffer): Promise<SessionOutput | null> {
    const chunk = this.chunk!;
    chunk.remaining -= bytes.length;
    const phase = this.chunked;
    if (phase && !chunk.refusal && !phase.failed && !phase.intake.refused) {
      const text = phase.reader.push(bytes);
      if (text.error === "bare-line-end") return this.countErrors(await this.bareLineEndInChunk(phase));
      this.takeChunkText(phase, text.data, text.error);
    }
    if (chunk.remaining > 0) {
      if (phase) await phase.intake.written(); // back-pressure, as in DATA
      return null;
    }
    return this.countErrors(await this.chunkDone());
  }

  /** Stores normalised chunk text unless the message already failed, or fails it now. */
  private takeChunkText(phase: ChunkPhase, data: Buffer[], error?: "line-too-long"): void {
    if (phase.failed) return;
    if (error) {
      phase.failed = dataErrorRefusal(error);
      return;
    }
    const size = data.reduce((n, b) => n + b.length, 0);
    if (phase.intake.size + size > this.settings.limits.messageSize) {
      phase.failed = dataErrorRefusal("too-big");
      return;
    }
    for (const piece of data) phase.intake.add(piece);
  }

  /**
   * SECURITY.md rule 1, as in DATA: 521 5.5.2 and close at once; the rest of the chunk is never
   * read (the connection ends), so nothing after the bare line end can be taken as a command.
   */
  private async bareLineEndInChunk(phase: ChunkPhase): Promise<SessionOutput> {
    this.chunk = null;
    this.chunked = null;
    return this.finishMessage(phase.intake, "bare-line-end");
  }

  private async chunkDone(): Promise<SessionOutput> {
    const chunk = this.chunk!;
    this.chunk = null;
    if (chunk.refusal) return { replies: [chunk.refusal] };
    const phase = this.chunked!;
    if (chunk.last && !phase.failed && !phase.intake.refused) {
      const tail = phase.reader.end();
      if (tail.error === "bare-line-end") return this.bareLineEndInChunk(phase);
      this.takeChunkText(phase, tail.data, tail.error);
    }
    if (phase.failed) {
      // Too big or a line too long: the transaction is over; the client sends RSET or starts
      // again (RFC 3030 §4.2). DATA answers the same after its dot.
      const failed = phase.failed;
      this.ports.log.info({ event: "data-refused", from: this.transaction?.sender.address, reason: failed.reason }, "message refused");
      this.dropChunks();
      this.transaction = null;
      return { replies: [failed.reply] };
    }
    if (!chunk.last) return { replies: [reply(250, "2.0.0", "Ok: chunk received")] };
    this.chunked = null;
    return this.finishMessage(phase.intake);
  }

  /** Forgets a half-received chunked message and removes its spool file. */
  private dropChunks(): void {
    const intake = this.chunked?.intake;
    this.chunked = null;
    this.chunk = null;
    if (intake) void intake.abort();
  }

  /** The connection ended (or failed) mid-session: nothing half-received may survive. */
  async abort(): Promise<void> {
    this.closed = true;
    this.dropChunks();
    const phase = this.dataPhase;
    this.dataPhase = null;
    this.authExchange.cancel();
    if (phase) await phase.intake.abort();
  }
}

/** "EHLO" or "HELO" when the command line is one (a malformed one too: it ends its group all the same). */
function helloVerb(line: Buffer): "EHLO" | "HELO" | null {
  if (line.length < 4 || (line.length > 4 && line[4] !== 0x20)) return null;
  const verb = line.toString("latin1", 0, 4).toUpperCase();
  return verb === "EHLO" || verb === "HELO" ? verb : null;
}

export function newSessionId(): string {
  return randomBytes(6).toString("hex");
}
