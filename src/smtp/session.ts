/**
 * The SMTP session as a state machine (DESIGN principle 1). It receives command lines and DATA
 * bytes, answers with replies and asks its ports (SASL, policy, spool) for decisions. It never
 * touches a socket, a file or the clock: the connection layer does the I/O.
 *
 * Where the session stands is one value, `phase` (src/smtp/session-phase.ts). Each verb whose use
 * depends on it is first checked (VERB_PHASES and the verb's own conditions), then carried out,
 * as OpenSMTPD's smtp_check_* / smtp_proceed_* pairs.
 */
import { randomBytes } from "node:crypto";
import { reply, type Reply } from "./reply.js";
import { parseCommand, type ParsedCommand } from "./command.js";
import { DataReader, type DataError } from "./data-reader.js";
import { ChunkedMessage } from "./chunked-message.js";
import { endChunk, takeChunkOctets, type ChunkEnd, type ChunkPhase } from "./chunk-phase.js";
import { AuthExchange, type AuthResult } from "./auth-exchange.js";
import { MessageIntake } from "./message-intake.js";
import { ErrorBudget } from "./error-budget.js";
import { addRecipient, startTransaction, type EnvelopeContext } from "./mail-transaction.js";
import { refusal } from "./refusals.js";
import { helloReply } from "./ehlo.js";
import { CLOSED, CONNECTED, greetedOrConnected, helloOf, phaseRefusal, transactionOf, type CommandPhase, type Hello, type Phase } from "./session-phase.js";
import type { ConnectionFacts, Expecting, SessionOutput, SessionPorts, SessionSettings } from "./session-types.js";

export * from "./session-types.js";

export class Session {
  private phase: Phase = CONNECTED;
  /** A fact of the session, like TLS in `facts`: kept through RSET and EHLO, forgotten by STARTTLS. */
  private authUser: string | null = null;
  /** The command just handled must end its pipelined group (see groupEnd). */
  private endsGroup: "EHLO" | "HELO" | null = null;

  private readonly budget: ErrorBudget;
  private readonly authExchange: AuthExchange;

  constructor(
    private readonly settings: SessionSettings,
    private readonly ports: SessionPorts,
    private facts: ConnectionFacts,
  ) {
    this.budget = new ErrorBudget(settings.limits);
    this.authExchange = new AuthExchange(settings, ports, (text) => this.closing(text), this.budget);
  }

  get expecting(): Expecting {
    switch (this.phase.kind) {
      case "chunk":
        return "chunk";
      case "data":
        return "data";
      case "auth":
        return "auth-response";
      default:
        return "command";
    }
  }

  /** Line limit for the next line the connection reads (RFC 5321 §4.5.3.1.4, RFC 4954 §4). */
  get lineLimit(): number {
    return this.phase.kind === "auth" ? this.settings.limits.authLineLength : this.settings.limits.commandLineLength;
  }

  /**
   * While AUTH is offered, an "AUTH" command line may be as long as a SASL response line: RFC 4954
   * §4 tells a client to move a long initial response to the next line, but OAuth clients (Python's
   * smtplib, XOAUTH2 libraries) put a whole bearer token on the AUTH line, as Gmail accepts.
   */
  get authCommandLimit(): number | null {
    return this.phase.kind !== "auth" && this.authOffered() ? this.settings.limits.authLineLength : null;
  }

  get authenticatedUser(): string | null {
    return this.authUser;
  }

  /** A MAIL transaction or DATA is under way: a shutdown waits for it (src/server/connection.ts). */
  get inTransaction(): boolean {
    return transactionOf(this.phase) !== null;
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
    return this.budget.counts;
  }

  greeting(): Reply {
    return reply(220, undefined, `${this.settings.hostname} ${this.settings.banner}`);
  }

  /** RFC 3207 §4.2: after the handshake, forget everything learned before it. */
  tlsStarted(tls: { version: string; cipher: string }): void {
    this.facts = { ...this.facts, tls };
    this.authUser = null;
    this.authExchange.cancel();
    this.dropMessage();
    if (this.phase.kind !== "closed") this.phase = CONNECTED;
  }

  /** A line the connection layer could not take (too long, bare CR/LF). */
  lineError(kind: "too-long" | "bare-lf" | "bare-cr"): SessionOutput {
    this.authExchange.cancel();
    if (this.phase.kind === "auth") this.phase = { kind: "greeted", hello: this.phase.hello };
    const text = kind === "too-long" ? "Error: line too long" : "Error: bare CR or LF in command; lines must end with CRLF";
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
    const phase = this.phase;
    switch (phase.kind) {
      case "closed":
        return { replies: [] };
      case "auth":
        return this.countErrors(await this.authStep(phase.hello, this.authExchange.respond(line)));
      case "data":
      case "chunk":
        throw new Error(`a command line while reading message octets (${phase.kind})`);
      default:
        this.endsGroup = helloVerb(line);
        return this.countErrors(await this.command(phase, parseCommand(line)));
    }
  }

  private countErrors(out: SessionOutput): SessionOutput {
    if (out.action === "close") {
      this.close();
      return out;
    }
    if (this.budget.chargeReplies(out.replies)) {
      this.ports.log.warn({ event: "limit", limit: "errors", count: this.budget.counts.errors }, "too many errors");
      this.close();
      return { replies: [...out.replies, this.closing("Error: too many errors")], action: "close" };
    }
    return out;
  }

  /** The session answered its last reply: nothing half-received is kept. */
  private close(): void {
    this.dropMessage();
    this.phase = CLOSED;
  }

  private closing(text: string): Reply {
    return reply(421, "4.7.0", `${this.settings.hostname} ${text}`);
  }

  private junkCommand(r: Reply): SessionOutput {
    if (this.budget.chargeJunk()) {
      this.ports.log.warn({ event: "limit", limit: "junkCommands", count: this.budget.counts.junk }, "too many junk commands");
      return { replies: [this.closing("Error: too many junk commands")], action: "close" };
    }
    return { replies: [r] };
  }

  /** The dispatcher: verbs that run in every command phase first, then the checked ones. */
  private async command(phase: CommandPhase, cmd: ParsedCommand): Promise<SessionOutput> {
    switch (cmd.kind) {
      case "error":
        return { replies: [cmd.reply] };
      case "EHLO":
      case "HELO":
        return { replies: [this.hello(cmd.kind, cmd.domain)] };
      case "RSET":
        this.dropMessage();
        this.phase = greetedOrConnected(helloOf(phase));
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

      case "STARTTLS":
        return refused(this.checkStartTls(phase)) ?? { replies: [reply(220, "2.0.0", "Ready to start TLS")], action: "starttls" };
      case "AUTH":
        return refused(this.checkAuth(phase)) ?? this.auth(helloOf(phase)!, cmd.mechanism, cmd.initialResponse);
      case "MAIL":
        return refused(phaseRefusal("MAIL", phase)) ?? { replies: [await this.mail(helloOf(phase)!, cmd.path, cmd.params)] };
      case "RCPT":
        return refused(phaseRefusal("RCPT", phase)) ?? { replies: [await this.rcpt(phase, cmd.path, cmd.params)] };
      case "DATA":
        return refused(phaseRefusal("DATA", phase) ?? this.recipientsRefusal(phase)) ?? this.data(phase);
      case "BDAT": {
        // RFC 3030 §2: even a refused BDAT is followed by its octets; they are read and dropped.
        const refusal = phaseRefusal("BDAT", phase) ?? this.recipientsRefusal(phase);
        return refusal ? this.readChunk(phase, cmd.size, cmd.last, refusal) : this.bdat(phase, cmd.size, cmd.last);
      }
    }
  }

  // ---- EHLO / HELO ------------------------------------------------------------------------

  private hello(kind: "EHLO" | "HELO", domain: string): Reply {
    // RFC 5321 §4.1.4: EHLO/HELO resets any transaction in progress.
    this.dropMessage();
    this.phase = { kind: "greeted", hello: { name: domain, esmtp: kind === "EHLO" } };
    return helloReply(kind, domain, {
      hostname: this.settings.hostname,
      remoteIp: this.facts.remoteIp,
      messageSize: this.settings.limits.messageSize,
      startTls: this.settings.tlsAvailable && !this.facts.tls,
      // The mechanisms are looked up for EHLO only.
      mechanisms: kind === "EHLO" && this.authOffered() ? this.ports.mechanisms() : [],
      requireTls: this.requireTlsOffered(),
    });
  }

  /** RFC 8689 §2: REQUIRETLS only on a TLS-protected session (never under authWithoutTls in clear). */
  private requireTlsOffered(): boolean {
    return this.facts.tls !== undefined && this.settings.requireTls !== false;
  }

  private authOffered(): boolean {
    if (!this.settings.authEnabled || this.authUser) return false;
    return this.facts.tls !== undefined || this.settings.authWithoutTls;
  }

  // ---- STARTTLS (RFC 3207) ------------------------------------------------------------------

  private checkStartTls(phase: CommandPhase): Reply | null {
    if (this.facts.tls) return refusal("tlsActive");
    if (!this.settings.tlsAvailable) return refusal("tlsUnavailable");
    return phaseRefusal("STARTTLS", phase);
  }

  // ---- AUTH (RFC 4954) ------------------------------------------------------------------------

  private checkAuth(phase: CommandPhase): Reply | null {
    if (!helloOf(phase)?.esmtp) return refusal("needEhlo");
    if (!this.facts.tls && !this.settings.authWithoutTls) {
      this.ports.log.warn({ event: "auth-refused", reason: "no-tls" }, "AUTH before TLS refused");
      // SECURITY.md rule 9: never take a password in clear; tell the client where to go.
      return this.settings.mode === "mta" ? refusal("authNotHere") : refusal("startTlsFirst");
    }
    if (!this.settings.authEnabled) return refusal("authNotHere");
    if (this.authUser) return refusal("alreadyAuthenticated");
    return phaseRefusal("AUTH", phase);
  }

  private async auth(hello: Hello, mechanismName: string, initial: string | undefined): Promise<SessionOutput> {
    this.phase = { kind: "auth", hello };
    return this.authStep(hello, this.authExchange.begin(mechanismName, initial));
  }

  /** After each step: still in the exchange unless it ended (or the connection went away meanwhile). */
  private async authStep(hello: Hello, step: Promise<AuthResult>): Promise<SessionOutput> {
    const result = await step;
    if (this.phase.kind === "auth" && !this.authExchange.active) this.phase = { kind: "greeted", hello };
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

  // ---- MAIL / RCPT (src/smtp/mail-transaction.ts) --------------------------------------------

  private envelopeContext(hello: Hello): EnvelopeContext {
    const policy = { ip: this.facts.remoteIp, mode: this.settings.mode, authUser: this.authUser ?? undefined, helo: hello.name };
    const { settings, ports } = this;
    return {
      settings,
      ports,
      policy,
      tls: this.facts.tls !== undefined,
      esmtp: hello.esmtp,
      authOffered: this.authOffered(),
      requireTlsOffered: hello.esmtp && this.requireTlsOffered(),
    };
  }

  private async mail(hello: Hello, pathText: string, paramText: string): Promise<Reply> {
    const started = await startTransaction(this.envelopeContext(hello), pathText, paramText);
    if (started.tx && this.phase.kind !== "closed") this.phase = { kind: "mail", hello, tx: started.tx };
    return started.reply;
  }

  private async rcpt(phase: CommandPhase, pathText: string, paramText: string): Promise<Reply> {
    return addRecipient(this.envelopeContext(helloOf(phase)!), transactionOf(phase)!, pathText, paramText);
  }

  // ---- DATA ------------------------------------------------------------------------------------

  /** Why no message may start in the mail phase (DATA or the first BDAT): no recipients. */
  private recipientsRefusal(phase: CommandPhase): Reply | null {
    if (phase.kind !== "mail" || phase.tx.recipients.length > 0) return null;
    return phase.tx.refusedRecipients > 0 ? refusal("noValidRecipients") : refusal("needRcpt");
  }

  private async openIntake(phase: Extract<Phase, { kind: "mail" }>): Promise<MessageIntake | Reply> {
    return MessageIntake.open({
      settings: this.settings,
      ports: this.ports,
      facts: this.facts,
      helo: phase.hello.name,
      esmtp: phase.hello.esmtp,
      authUser: this.authUser,
      tx: phase.tx,
    });
  }

  private async data(phase: CommandPhase): Promise<SessionOutput> {
    if (phase.kind !== "mail") throw new Error(`DATA proceeds only in the mail phase, not ${phase.kind}`);
    const intake = await this.openIntake(phase);
    if (!(intake instanceof MessageIntake)) return { replies: [intake] };
    const reader = new DataReader({
      maxLineLength: this.settings.limits.textLineLength,
      maxMessageSize: this.settings.limits.messageSize,
      bareLineEnds: this.settings.bareLineEnds,
    });
    if (this.phase.kind === "closed") {
      await intake.abort();
      return { replies: [] };
    }
    this.phase = { kind: "data", hello: phase.hello, tx: phase.tx, intake, reader };
    return { replies: [reply(354, undefined, "End data with <CR><LF>.<CR><LF>")] };
  }

  /**
   * Raw bytes from the socket while in DATA. Resolves to null while the message goes on, or to
   * the final reply and the bytes that followed the terminating dot.
   */
  async receiveData(chunk: Buffer): Promise<{ output: SessionOutput; rest?: Buffer } | null> {
    const phase = this.phase;
    if (phase.kind !== "data") throw new Error(`message data while ${phase.kind}`);
    const { intake, reader } = phase;
    const pushed = reader.push(chunk);
    for (const piece of pushed.data) intake.add(piece);
    if (!pushed.done) {
      await intake.written(); // back-pressure: the socket is read again only once the spool took the bytes
      return null;
    }
    this.phase = { kind: "greeted", hello: phase.hello };
    return { output: this.countErrors(await this.finishMessage(intake, pushed.error)), rest: pushed.rest };
  }

  /** The transaction is over (the phase has left it): the message is committed or refused. */
  private async finishMessage(intake: MessageIntake, error?: DataError): Promise<SessionOutput> {
    const { output, queued } = await intake.finish(error);
    if (queued) this.budget.forgive(); // a delivered message forgives earlier errors and junk commands
    return output;
  }

  // ---- BDAT (RFC 3030) ---------------------------------------------------------------------------

  /** Octets the connection must hand to receiveChunk next (0 unless expecting "chunk"). */
  get chunkRemaining(): number {
    return this.phase.kind === "chunk" ? this.phase.chunk.remaining : 0;
  }

  private async bdat(phase: CommandPhase, size: number, last: boolean): Promise<SessionOutput> {
    if (phase.kind === "bdat") return this.readChunk(phase, size, last);
    if (phase.kind !== "mail") throw new Error(`BDAT proceeds only in the mail or bdat phase, not ${phase.kind}`);
    // The first chunk: the same spool, header checks, line rules and limits as DATA (SECURITY.md rule 1).
    const intake = await this.openIntake(phase);
    if (!(intake instanceof MessageIntake)) return this.readChunk(phase, size, last, intake);
    const { limits, bareLineEnds } = this.settings;
    const message = new ChunkedMessage(intake, limits, bareLineEnds);
    return this.readChunk({ kind: "bdat", hello: phase.hello, tx: phase.tx, message }, size, last);
  }

  /** The chunk's octets come next (src/smtp/chunk-phase.ts); `refusal` answers them once read. */
  private readChunk(resume: CommandPhase, size: number, last: boolean, refusal?: Reply): Promise<SessionOutput> | SessionOutput {
    if (this.phase.kind === "closed") {
      // The connection went away while the spool file opened.
      if (resume.kind === "bdat") void resume.message.intake.abort();
      return { replies: [] };
    }
    const phase: ChunkPhase = { kind: "chunk", chunk: { remaining: size, last, refusal }, resume };
    this.phase = phase;
    return size === 0 ? this.afterChunk(endChunk(phase, this.ports.log)) : { replies: [] };
  }

  /** At most chunkRemaining octets of the current chunk; resolves to the reply once it is complete. */
  async receiveChunk(bytes: Buffer): Promise<SessionOutput | null> {
    const phase = this.phase;
    if (phase.kind !== "chunk") throw new Error(`chunk octets while ${phase.kind}`);
    const outcome = await takeChunkOctets(phase, bytes, this.ports.log);
    return outcome.kind === "more" ? null : this.countErrors(await this.afterChunk(outcome));
  }

  private async afterChunk(outcome: ChunkEnd): Promise<SessionOutput> {
    this.phase = outcome.next;
    if (outcome.kind === "reply") return { replies: [outcome.reply] };
    return this.finishMessage(outcome.intake, outcome.error);
  }

  /** Forgets a half-received chunked message and removes its spool file. */
  private dropMessage(): void {
    const phase = this.phase;
    const message = phase.kind === "bdat" ? phase.message : phase.kind === "chunk" && phase.resume.kind === "bdat" ? phase.resume.message : null;
    if (message) void message.intake.abort();
  }

  /** The connection ended (or failed) mid-session: nothing half-received may survive. */
  async abort(): Promise<void> {
    const phase = this.phase;
    this.dropMessage();
    this.phase = CLOSED;
    this.authExchange.cancel();
    if (phase.kind === "data") await phase.intake.abort();
  }
}

/** A check's refusal as the command's output, or null to proceed. */
function refused(r: Reply | null): SessionOutput | null {
  return r ? { replies: [r] } : null;
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
