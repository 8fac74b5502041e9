/**
 * The byte/reply layer of the outbound client: one socket (plain or TLS), a strict reply parser,
 * a queue of replies read so far, per-wait deadlines, and an in-place TLS upgrade. The SMTP
 * dialogue itself lives in smtp-client.ts.
 */
import { constants as cryptoConstants } from "node:crypto";
import { once } from "node:events";
import { isIP, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from "node:tls";
import { tlsExporterBinding } from "../sasl/tls-exporter.js";
import { DataEncoder } from "./data-encoder.js";
import { ReplyParser, SmtpProtocolError, type SmtpReply } from "./smtp-reply.js";

/**
 * network/timeout: the connection broke; protocol: the peer is not speaking SMTP correctly;
 * tls: handshake or certificate failure, or TLS required and unavailable; reply: the peer refused;
 * policy: we refused (e.g. AUTH in clear); local: our own input (the message file) failed.
 */
export type SmtpErrorKind = "network" | "timeout" | "protocol" | "tls" | "reply" | "policy" | "local";

/** Every failure of the client. `reply` is set when the server's answer caused it. */
export class SmtpClientError extends Error {
  override readonly name = "SmtpClientError";
  constructor(
    readonly kind: SmtpErrorKind,
    message: string,
    readonly reply?: SmtpReply,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** A 5xx reply: retrying the same thing will not help. */
  get permanent(): boolean {
    return this.reply !== undefined && this.reply.code >= 500;
  }
}

export interface TlsParams {
  servername?: string;
  rejectUnauthorized?: boolean;
  ca?: string | Buffer;
  /**
   * Checks the peer once the handshake is done (implicit TLS, or after STARTTLS): null accepts,
   * a text refuses and the session is dropped without QUIT (DANE, MTA-STS: tls-policy/policy.ts).
   */
  verifyPeer?: (socket: TLSSocket) => string | null;
}

/**
 * OpenSSL's X509 verification codes (as Node reports them) and Node's own name check: certificate
 * problems, which are TLS failures, never network ones (RFC 8461 §4.2, RFC 8460 §4.3).
 */
const CERTIFICATE_ERROR_CODES = new Set([
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_CRL",
  "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
  "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
  "CERT_SIGNATURE_FAILURE",
  "CERT_NOT_YET_VALID",
  "CERT_HAS_EXPIRED",
  "ERROR_IN_CERT_NOT_BEFORE_FIELD",
  "ERROR_IN_CERT_NOT_AFTER_FIELD",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "CERT_CHAIN_TOO_LONG",
  "CERT_REVOKED",
  "INVALID_CA",
  "PATH_LENGTH_EXCEEDED",
  "INVALID_PURPOSE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "HOSTNAME_MISMATCH",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** True for an error that says the peer's certificate was refused. */
export function isCertificateError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === "string" && CERTIFICATE_ERROR_CODES.has(code);
}

/** SNI only for names: RFC 6066 §3 forbids IP literals in server_name. */
export function sniName(host: string, servername?: string): string | undefined {
  const name = servername ?? host;
  return isIP(name) ? undefined : name;
}

/**
 * The client side of every outbound TLS session, implicit or after STARTTLS. With verification
 * on, Node checks the chain and that the certificate names `servername` (else `host`, an IP
 * literal then matching an IP SAN: RFC 6125 §6). `host` is passed even over an existing socket
 * so the identity checked is never a default. A server asking to renegotiate is refused.
 */
export function clientTlsOptions(params: TlsParams, host: string): ConnectionOptions {
  return {
    host,
    servername: sniName(host, params.servername),
    rejectUnauthorized: params.rejectUnauthorized ?? true,
    ca: params.ca,
    minVersion: "TLSv1.2",
    secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
  };
}

/**
 * Message data goes out in writes of up to this many bytes: each socket write is a syscall, and
 * copying this much costs less than one. Larger groups are corked instead (one writev, no copy).
 */
const DATA_WRITE_BYTES = 64 * 1024;

export class SmtpConnection {
  private socket: Socket;
  private parser = new ReplyParser();
  private readonly replies: SmtpReply[] = [];
  private waiter: { resolve(r: SmtpReply): void; reject(e: Error): void } | undefined;
  private failure: SmtpClientError | undefined;
  private closedByUs = false;
  /** Set once STARTTLS's handshake began: from then on plaintext commands are meaningless. */
  private upgradeStarted = false;
  /** True while a TLS handshake runs: whatever fails then is a TLS failure. */
  private handshaking = false;
  /** Rejects once the connection has failed, so every wait ends promptly. */
  private readonly failed: Promise<never>;
  private rejectFailed!: (err: SmtpClientError) => void;
  secure: boolean;

  constructor(
    socket: Socket,
    secure: boolean,
    private readonly transcript?: (dir: "C" | "S", line: string) => void,
  ) {
    this.socket = socket;
    this.secure = secure;
    // Commands go out in whole groups and the body's last chunk ends with CRLF.CRLF: Nagle's
    // algorithm would hold that tail back until the server's delayed ACK (up to 40 ms on Linux).
    socket.setNoDelay(true);
    this.failed = new Promise<never>((_, reject) => {
      this.rejectFailed = reject;
    });
    this.failed.catch(() => undefined);
    this.attach(socket);
  }

  /** Waits for the TCP (or TLS) connection to be established. */
  async established(timeoutMs: number): Promise<void> {
    const event = this.secure ? "secureConnect" : "connect";
    // Implicit TLS: the handshake is part of connecting. A refused TCP connection is still
    // "network" (ECONNREFUSED is no TLS error); a certificate refusal is "tls" (classify).
    await this.withDeadline(once(this.socket, event), timeoutMs, "connect");
  }

  /** Runs the caller's check of the peer after the handshake; a refusal drops the session without QUIT. */
  checkPeer(verifyPeer: TlsParams["verifyPeer"]): void {
    if (!verifyPeer || !this.secure) return;
    const refusal = verifyPeer(this.socket as TLSSocket);
    if (refusal === null) return;
    const err = new SmtpClientError("tls", refusal, undefined, { cause: { code: "PEER_REFUSED" } });
    this.fail(err);
    throw err;
  }

  /** RFC 9266 tls-exporter data for SCRAM -PLUS: TLS 1.3 only, else null. */
  channelBinding(): Buffer | null {
    return this.secure ? tlsExporterBinding(this.socket as TLSSocket) : null;
  }

  /** Replies received so far: none since a point in time means the server acted on nothing since. */
  received = 0;

  /** False once the connection failed or we closed it: the session cannot carry another message. */
  get usable(): boolean {
    return !this.failure && !this.closedByUs;
  }

  /** True when nothing from the server is waiting to be read (checked before a TLS upgrade). */
  get inputEmpty(): boolean {
    return this.replies.length === 0 && !this.parser.hasPartial;
  }

  send(line: string, logAs: string = line): void {
    // Commands are built from validated parts; a line break here would be command injection.
    if (/[\r\n]/.test(line)) throw new SmtpClientError("policy", "refusing to send a command containing CR or LF");
    this.checkAlive();
    this.transcript?.("C", logAs);
    this.socket.write(line + "\r\n");
  }

  /** Several commands in one write (RFC 2920 §3.1). */
  sendGroup(lines: string[]): void {
    for (const line of lines) {
      if (/[\r\n]/.test(line)) throw new SmtpClientError("policy", "refusing to send a command containing CR or LF");
    }
    this.checkAlive();
    for (const line of lines) this.transcript?.("C", line);
    this.socket.write(lines.map((l) => l + "\r\n").join(""));
  }

  /**
   * Streams a message as DATA (CRLF enforcement, dot-stuffing, the final ".") and returns the
   * octets sent. Encoded bytes are gathered into writes of up to DATA_WRITE_BYTES, and the last
   * chunk always shares a write with the terminator, so a small message costs one write. If the
   * message cannot be read, the connection fails and no "." is ever sent: a truncated message
   * must not be terminated and thereby delivered.
   */
  async writeMessage(message: AsyncIterable<Buffer | string>, timeoutMs: number): Promise<number> {
    const encoder = new DataEncoder();
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let octets = 0;
    try {
      for await (const chunk of message) {
        const out = encoder.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
        if (out.length === 0) continue;
        // Written only once a later chunk shows the batch does not hold the last one.
        if (batchBytes > 0 && batchBytes + out.length > DATA_WRITE_BYTES) {
          await this.writeData(batch, batchBytes, timeoutMs);
          batch = [];
          batchBytes = 0;
        }
        batch.push(out);
        batchBytes += out.length;
        octets += out.length;
      }
    } catch (err) {
      if (err instanceof SmtpClientError) throw err;
      const failure = new SmtpClientError("local", `reading the message failed: ${(err as Error).message}`, undefined, { cause: err });
      this.fail(failure);
      throw failure;
    }
    const tail = encoder.end();
    batch.push(tail);
    await this.writeData(batch, batchBytes + tail.length, timeoutMs);
    return octets + tail.length;
  }

  /** Writes `chunks` as one socket write, waiting for the socket to drain when its buffer is full. */
  private async writeData(chunks: Buffer[], length: number, timeoutMs: number): Promise<void> {
    this.checkAlive();
    if (chunks.length === 1) {
      this.socket.write(chunks[0]);
    } else if (length <= DATA_WRITE_BYTES) {
      this.socket.write(Buffer.concat(chunks, length));
    } else {
      this.socket.cork();
      for (const chunk of chunks) this.socket.write(chunk);
      this.socket.uncork();
    }
    if (!this.socket.writableNeedDrain) return;
    await this.withDeadline(once(this.socket, "drain"), timeoutMs, "data transfer");
  }

  readReply(timeoutMs: number, stage: string): Promise<SmtpReply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    const pending = new Promise<SmtpReply>((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
    return this.withDeadline(pending, timeoutMs, stage);
  }

  /** STARTTLS's TLS handshake over the existing socket (RFC 3207 §4). */
  async upgrade(params: TlsParams, host: string, timeoutMs: number): Promise<void> {
    const plain = this.socket;
    this.upgradeStarted = true;
    this.detach(plain);
    // Synchronously hand the socket to TLS: no plaintext byte can be read after this point.
    const secure: TLSSocket = tlsConnect({ ...clientTlsOptions(params, host), socket: plain });
    this.socket = secure;
    this.parser = new ReplyParser();
    this.attach(secure);
    this.handshaking = true;
    try {
      await this.withDeadline(once(secure, "secureConnect"), timeoutMs, "TLS handshake");
    } finally {
      this.handshaking = false;
    }
    this.secure = true;
    this.checkPeer(params.verifyPeer);
  }

  /** Best-effort QUIT without waiting, then close; used when giving up on a healthy session. */
  abandon(): void {
    if (!this.failure && (this.secure || !this.upgradeStarted)) {
      try {
        this.send("QUIT");
      } catch {
        // already broken
      }
    }
    this.end();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  /** Ends politely (after QUIT). */
  end(): void {
    this.closedByUs = true;
    this.socket.end();
  }

  destroy(): void {
    this.closedByUs = true;
    this.socket.destroy();
  }

  /** Fails the connection: every current and later wait rejects with `err`. */
  fail(err: SmtpClientError): void {
    this.failure ??= err;
    this.rejectFailed(this.failure);
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(this.failure);
    this.closedByUs = true;
    this.socket.destroy();
  }

  private checkAlive(): void {
    if (this.failure) throw this.failure;
  }

  private async withDeadline<T>(work: Promise<T>, timeoutMs: number, stage: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new SmtpClientError("timeout", `timeout after ${timeoutMs} ms waiting for ${stage}`);
        this.fail(err);
        reject(err);
      }, timeoutMs);
    });
    try {
      return await Promise.race([work, deadline, this.failed]);
    } catch (err) {
      if (err instanceof SmtpClientError) throw err;
      const wrapped = this.classify(err);
      this.fail(wrapped);
      throw wrapped;
    } finally {
      clearTimeout(timer);
    }
  }

  private classify(err: unknown): SmtpClientError {
    const e = err as NodeJS.ErrnoException;
    // Certificate errors (UNABLE_TO_VERIFY_LEAF_SIGNATURE has none of the words below) and any
    // failure during the STARTTLS handshake are TLS failures, not network errors.
    const tlsError =
      this.handshaking ||
      isCertificateError(err) ||
      (typeof e?.code === "string" && (/CERT|SSL|TLS|SELF_SIGNED|HOSTNAME|ALTNAME/.test(e.code) || e.code.startsWith("ERR_SSL")));
    return new SmtpClientError(tlsError ? "tls" : "network", e?.message ?? String(err), undefined, { cause: err });
  }

  private readonly onData = (chunk: Buffer): void => {
    let replies: SmtpReply[];
    try {
      replies = this.parser.push(chunk);
    } catch (err) {
      const message = err instanceof SmtpProtocolError ? err.message : String(err);
      this.fail(new SmtpClientError("protocol", message));
      return;
    }
    for (const reply of replies) {
      this.received++;
      for (let i = 0; i < reply.lines.length; i++) {
        const sep = i < reply.lines.length - 1 ? "-" : " ";
        this.transcript?.("S", `${reply.code}${sep}${reply.enhanced ? reply.enhanced + " " : ""}${reply.lines[i]}`);
      }
      const waiter = this.waiter;
      if (waiter) {
        this.waiter = undefined;
        waiter.resolve(reply);
      } else {
        this.replies.push(reply);
        // A server that floods unsolicited replies is not speaking SMTP.
        if (this.replies.length > 1000) this.fail(new SmtpClientError("protocol", "too many unread replies"));
      }
    }
  };

  private readonly onError = (err: Error): void => {
    this.fail(this.classify(err));
  };

  private readonly onClose = (): void => {
    this.fail(new SmtpClientError("network", this.closedByUs ? "connection closed" : "connection closed by the server"));
  };

  private attach(socket: Socket): void {
    socket.on("data", this.onData);
    socket.on("error", this.onError);
    socket.on("close", this.onClose);
  }

  private detach(socket: Socket): void {
    socket.off("data", this.onData);
    socket.off("error", this.onError);
    socket.off("close", this.onClose);
  }
}
