/**
 * One client connection: socket bytes in, replies out, the STARTTLS upgrade, deadlines.
 * All protocol decisions are the Session's; this file only moves bytes and keeps time.
 */
import type { Socket } from "node:net";
import { type SecureContext, TLSSocket } from "node:tls";
import { InputBuffer } from "../smtp/input-buffer.js";
import { closingReply, Se430MailSystem, Se432NotAccepting, Se442BadConnection } from "../base/reply-codes.js";
import { formatReply, type Reply } from "../smtp/reply.js";
import type { Session, Expecting, SessionOutput } from "../smtp/session.js";
import type { Logger } from "./log.js";
import type { ConnectionGuard } from "./connection-guard.js";
import { serverTlsSocket } from "./tls.js";
import { tlsExporterBinding } from "../sasl/tls-exporter.js";

export interface ConnectionOptions {
  hostname: string;
  secureContext?: SecureContext;
  /** Per-command deadline (RFC 5321 §4.5.3.2.7); not reset by single bytes (slowloris). */
  idleTimeoutMs: number;
  /** Deadline for the whole DATA phase. */
  dataTimeoutMs: number;
  tlsHandshakeTimeoutMs: number;
  /**
   * Wait this long before the greeting; a client that talks first is an early talker (SECURITY.md
   * rule 4, RFC 5321 §4.3.1: the client waits for the 220). 0 still catches bytes that arrive
   * before the greeting is written (it goes out on the next turn of the event loop).
   */
  greetPauseMs?: number;
  /** Abuse limits beside the session: lifetime, DATA rate, commands before AUTH, tarpit. */
  guard?: ConnectionGuard;
  /** Open connections, so a shutdown can reach them (src/server/operate.ts). */
  registry?: Set<SmtpConnection>;
  log: Logger;
  onClose(): void;
}

export class SmtpConnection {
  private socket: Socket;
  private readonly input = new InputBuffer();
  private processing = false;
  private closed = false;
  private finished = false;
  private upgrading = false;
  private deadline: NodeJS.Timeout | null = null;
  private greeted = false;
  private draining = false;
  private greetTimer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  /**
   * Replies held while one batch of buffered input is worked through, written together when the
   * batch ends: one TLS record and one TCP segment per pipelined group (RFC 2920 §3.1), not one each.
   */
  private outbox: string[] | null = null;
  private readonly onData = (chunk: Buffer) => this.received(chunk);

  constructor(
    socket: Socket,
    private readonly session: Session,
    private readonly opts: ConnectionOptions,
  ) {
    this.socket = socket;
  }

  start(): void {
    this.opts.registry?.add(this);
    this.attach(this.socket);
    const pause = this.opts.greetPauseMs ?? 0;
    this.greetTimer = pause > 0 ? setTimeout(() => this.greet(), pause) : setImmediate(() => this.greet());
    this.armDeadline(this.opts.idleTimeoutMs);
    this.opts.guard?.start((r) => this.expire(r));
  }

  /** RFC 9266 tls-exporter data for SCRAM -PLUS: TLS 1.3 only, null before TLS or mid-handshake. */
  channelBinding(): Buffer | null {
    return this.socket instanceof TLSSocket && !this.upgrading ? tlsExporterBinding(this.socket) : null;
  }

  /** A limit ended the session (lifetime, DATA rate): tell the client (unless mid-handshake), then close. */
  private expire(r: Reply): void {
    if (this.closed) return;
    if (!this.upgrading) this.send([r]);
    this.close(this.upgrading);
  }

  private greet(): void {
    this.greetTimer = null;
    if (this.closed) return;
    this.greeted = true;
    this.send([this.session.greeting()]);
  }

  /** Bytes before our 220: the client does not wait for us (SECURITY.md rule 4; postscreen's pregreet test). */
  private earlyTalker(): void {
    if (this.greetTimer) {
      clearTimeout(this.greetTimer as NodeJS.Timeout);
      clearImmediate(this.greetTimer as NodeJS.Immediate);
      this.greetTimer = null;
    }
    this.act(this.session.outOfSync("connect, before the greeting"));
  }

  private attach(socket: Socket): void {
    socket.on("data", this.onData);
    socket.on("error", (err) => {
      this.opts.log.debug({ event: "socket-error", err: err.message }, "socket error");
    });
    socket.on("close", () => this.finish());
  }

  private received(chunk: Buffer): void {
    if (this.closed) return;
    if (!this.greeted) {
      this.earlyTalker();
      return;
    }
    this.opts.guard?.received(chunk.length);
    this.input.push(chunk);
    if (!this.processing) void this.process();
  }

  /** Works through everything buffered; the socket is paused meanwhile (back-pressure). */
  private async process(): Promise<void> {
    this.processing = true;
    this.socket.pause();
    this.outbox ??= [];
    try {
      while (!this.closed && !this.upgrading) {
        const output = await this.next();
        if (output === null) break;
        // The tarpit: replies to a client past its soft error limits wait (the socket stays paused).
        const penalty = output.action === "close" ? 0 : (this.opts.guard?.penaltyMs(this.session) ?? 0);
        if (penalty > 0) await new Promise((resolve) => setTimeout(resolve, penalty));
        if (this.closed) break;
        if (this.act(output)) break;
      }
    } catch (err) {
      this.opts.log.error({ event: "internal-error", err: String(err) }, "session failed");
      this.send([closingReply(Se430MailSystem, `${this.opts.hostname} Error: internal server error`)]);
      this.close();
    } finally {
      this.processing = false;
      this.flush();
      if (this.draining) this.closeIfIdle();
      if (!this.closed && !this.upgrading) this.socket.resume();
    }
  }

  /** SIGTERM: end now if idle, else right after the transaction in flight (RFC 5321 §3.8: 421). */
  shutdown(): void {
    this.draining = true;
    if (!this.processing) this.closeIfIdle();
  }

  private closeIfIdle(): void {
    if (this.closed || this.upgrading || this.session.inTransaction || this.session.expecting !== "command") return;
    this.send([closingReply(Se432NotAccepting, `${this.opts.hostname} Service shutting down, try again later`)]);
    this.close();
  }

  /** The next unit of work: one command line, or a DATA chunk. null when more bytes are needed. */
  private async next(): Promise<SessionOutput | null> {
    if (this.session.expecting === "chunk") {
      // RFC 3030: exactly the announced octets, binary; what follows is the next command.
      const pending = this.input.takeAll();
      if (pending.length === 0) return null;
      const n = Math.min(pending.length, this.session.chunkRemaining);
      if (n < pending.length) this.input.push(pending.subarray(n));
      const output = await this.session.receiveChunk(pending.subarray(0, n));
      if (output === null) return null;
      this.armDeadline(this.opts.idleTimeoutMs);
      return output;
    }
    if (this.session.expecting === "data") {
      const chunk = this.input.takeAll();
      if (chunk.length === 0) return null;
      const result = await this.session.receiveData(chunk);
      if (result === null) return null;
      if (result.rest && result.rest.length > 0) this.input.push(result.rest);
      this.opts.guard?.dataEnded();
      this.armDeadline(this.opts.idleTimeoutMs);
      return result.output;
    }
    const authLimit = this.session.authCommandLimit;
    const line = this.input.takeLine(this.session.lineLimit, authLimit === null ? undefined : { prefix: "AUTH ", maxLength: authLimit });
    if (line === null) return null;
    if (line.kind === "error") return this.session.lineError(line.error);
    this.armDeadline(this.opts.idleTimeoutMs);
    if (this.session.expecting === "command") {
      const refused = this.opts.guard?.beforeCommand(this.session);
      if (refused) return refused;
    }
    const output = await this.session.handleLine(line.line);
    const hello = this.session.groupEnd;
    if (hello !== null && this.input.pendingLength > 0 && output.action !== "close") {
      // RFC 2920 §3.1: EHLO ends a group, and an RFC 821 client sending HELO does not pipeline at
      // all; bytes already behind it were sent without waiting for our reply (SECURITY.md rule 4,
      // as Postfix 3.9's smtpd_forbid_unauth_pipelining). Its reply is not sent: 554 and close.
      return this.session.outOfSync(hello);
    }
    if (this.session.expecting === ("data" as Expecting)) {
      // RFC 2920 §3.1: DATA ends a pipelined group; the body may only follow our 354.
      if (this.input.pendingLength > 0) {
        await this.session.abort();
        return this.session.outOfSync("DATA");
      }
      this.armDeadline(this.opts.dataTimeoutMs);
      this.opts.guard?.dataStarted();
    }
    if (this.session.expecting === ("chunk" as Expecting)) this.armDeadline(this.opts.dataTimeoutMs);
    return output;
  }

  /** Sends the replies and carries out the action. Returns true when processing must stop. */
  private act(output: SessionOutput): boolean {
    if (output.action === "starttls" && this.input.pendingLength > 0) {
      // SECURITY.md rule 2 (CVE-2011-0411): bytes behind STARTTLS could be an injection.
      this.input.clear();
      this.act(this.session.outOfSync("STARTTLS"));
      return true;
    }
    this.send(output.replies);
    if (output.action === "close") {
      this.close();
      return true;
    }
    if (output.action === "starttls") {
      this.upgrade();
      return true;
    }
    return false;
  }

  private send(replies: Reply[]): void {
    if (replies.length === 0 || this.socket.destroyed) return;
    const text = replies.map(formatReply).join("");
    if (this.outbox) this.outbox.push(text);
    else this.socket.write(text);
  }

  /** Writes the held replies; later sends go straight out until the next batch starts. */
  private flush(): void {
    const held = this.outbox;
    this.outbox = null;
    if (held && held.length > 0 && !this.socket.destroyed) this.socket.write(held.join(""));
  }

  /** RFC 3207: the handshake starts right after our 220; the session forgets everything after it. */
  private upgrade(): void {
    this.flush(); // our 220 goes out in clear before the handshake
    const raw = this.socket;
    this.upgrading = true;
    raw.removeListener("data", this.onData);
    raw.removeAllListeners("close");
    raw.removeAllListeners("error");
    this.input.clear();
    const secure = serverTlsSocket(raw, this.opts.secureContext);
    this.socket = secure;
    this.armDeadline(this.opts.tlsHandshakeTimeoutMs);
    secure.once("secure", () => {
      const info = tlsInfo(secure);
      this.session.tlsStarted(info);
      this.opts.log.info({ event: "tls", version: info.version, cipher: info.cipher }, "TLS established");
      this.upgrading = false;
      this.armDeadline(this.opts.idleTimeoutMs);
      if (this.input.pendingLength > 0) void this.process();
    });
    secure.on("error", (err) => {
      // After the handshake this is an ordinary socket error (a client that resets instead of
      // QUIT, say); the "close" that follows logs the disconnect, as on a plain connection.
      if (!this.upgrading) return this.opts.log.debug({ event: "socket-error", err: err.message }, "socket error");
      this.opts.log.info({ event: "tls-failed", err: err.message }, "TLS handshake failed");
      this.close(true);
    });
    secure.on("data", this.onData);
    secure.on("close", () => this.finish());
  }

  private armDeadline(ms: number): void {
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = setTimeout(() => this.timedOut(), ms);
    this.deadline.unref();
  }

  private timedOut(): void {
    if (this.closed) return;
    this.opts.log.info({ event: "timeout", phase: this.session.expecting }, "client timed out");
    if (!this.upgrading) this.send([closingReply(Se442BadConnection, `${this.opts.hostname} Error: timeout exceeded`)]);
    this.close(this.upgrading);
  }

  private close(destroy = false): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (this.deadline) clearTimeout(this.deadline);
    this.opts.guard?.stop();
    void this.session.abort();
    if (destroy) this.socket.destroy();
    else this.socket.end();
    // A client that never reads its replies must not keep the socket (and a limiter slot) forever.
    setTimeout(() => this.socket.destroy(), 5000).unref();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.opts.registry?.delete(this);
    if (this.deadline) clearTimeout(this.deadline);
    this.opts.guard?.stop();
    this.opts.onClose();
    if (this.closed) return;
    this.closed = true;
    const phase = this.session.expecting;
    // Logged once the half-received message is gone, so the log line means "nothing left behind".
    void this.session.abort().then(() => this.opts.log.info({ event: "disconnect", phase }, "client disconnected"));
  }
}

export function tlsInfo(socket: TLSSocket): { version: string; cipher: string } {
  return { version: socket.getProtocol() ?? "unknown", cipher: socket.getCipher()?.standardName ?? "unknown" };
}
