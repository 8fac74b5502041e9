/**
 * A small real SMTP server for tests: listens on 127.0.0.1 with an ephemeral port, records every
 * accepted envelope with the exact DATA bytes, and can be told how to answer. Supports PIPELINING
 * (it reads whatever arrives, in order), STARTTLS, implicit TLS, AUTH PLAIN, SIZE, DSN and
 * per-recipient replies. Shared by other test suites: keep it protocol-faithful and small.
 */
import { EventEmitter } from "node:events";
import { createServer as createNetServer, type Server, type Socket } from "node:net";
import { createSecureContext, createServer as createTlsServer, TLSSocket, type SecureContext } from "node:tls";

export interface SinkOptions {
  /** Port on 127.0.0.1; default 0 (ephemeral). */
  port?: number;
  /** Key and certificate: enables STARTTLS (or implicit TLS with `implicitTls`). */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** TLS from the first byte (port 465 style). */
  implicitTls?: boolean;
  /** Advertise STARTTLS (default: true when `tls` is given and not implicit). */
  starttls?: boolean;
  /** Bytes sent in clear right after "220 Ready to start TLS" (response injection attack). */
  injectAfterStarttls?: string;
  /** Advertise SIZE <n> and refuse larger MAIL SIZE= values and larger messages. */
  size?: number;
  pipelining?: boolean; // default true
  eightBitMime?: boolean; // default true
  smtputf8?: boolean; // default false
  dsn?: boolean; // default false
  /** Advertise REQUIRETLS (RFC 8689) after STARTTLS (or with implicit TLS). */
  requireTlsExtension?: boolean;
  /** false: answer EHLO with 502 (an RFC 821-only server). */
  ehlo?: boolean;
  /** Advertise AUTH PLAIN and accept these credentials. */
  auth?: { username: string; password: string };
  /** Refuse MAIL before a successful AUTH. */
  requireAuth?: boolean;
  /** Refuse MAIL before STARTTLS (530 5.7.0), as a server that demands TLS does. */
  requireTls?: boolean;
  /** Full greeting line, default "220 sink.test ESMTP". */
  greeting?: string;
  /** Reply line per command; undefined means the default 2xx; "DROP" (MAIL only) closes the session unanswered. */
  mailReply?: (from: string, params: string[]) => string | undefined;
  rcptReply?: (address: string, params: string[]) => string | undefined;
  dataStartReply?: () => string | undefined;
  /** Answer DATA with 354 even when no recipient was accepted, as some broken servers do. */
  dataWithoutRecipients?: boolean;
  dataReply?: (message: SinkMessage) => string | undefined;
}

export interface SinkMessage {
  from: string;
  to: string[];
  mailParams: string[];
  rcptParams: string[][];
  /** The message after dot-unstuffing, without the terminating ".CRLF". */
  data: Buffer;
  /** Exactly the bytes received after 354, terminator included. */
  raw: Buffer;
  tls: boolean;
  authUser?: string;
  helo: string;
}

export interface Sink {
  port: number;
  messages: SinkMessage[];
  /** Every command line received, in order. */
  commands: string[];
  /** Command lines grouped by the read that delivered them (shows PIPELINING). */
  commandBatches: string[][];
  /** Per connection that closed during DATA: the bytes received after 354 (no terminating "."). */
  unterminatedData: Buffer[];
  /** Connections that have closed. */
  closedSessions: number;
  waitForMessages(n: number, timeoutMs?: number): Promise<void>;
  waitForClosedSessions(n: number, timeoutMs?: number): Promise<void>;
  /** Closes every open session, as a peer's idle timeout would; keeps listening. */
  dropSessions(): void;
  close(): Promise<void>;
}

const CRLF = Buffer.from("\r\n");

/** Undo dot-stuffing (RFC 5321 §4.5.2) on a CRLF-terminated body. */
function unstuff(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let start = 0;
  while (start < body.length) {
    let end = body.indexOf(CRLF, start);
    end = end < 0 ? body.length : end + 2;
    const line = body.subarray(start, end);
    parts.push(line[0] === 0x2e ? line.subarray(1) : line);
    start = end;
  }
  return Buffer.concat(parts);
}

interface SinkRecord {
  messages: SinkMessage[];
  commands: string[];
  commandBatches: string[][];
  unterminatedData: Buffer[];
  closedSessions: number;
  emitter: EventEmitter;
}

class SinkSession {
  private buf: Buffer = Buffer.alloc(0);
  private mode: "command" | "data" | "auth" = "command";
  private helo = "";
  private from: string | undefined;
  private mailParams: string[] = [];
  private to: string[] = [];
  private rcptParams: string[][] = [];
  private authUser: string | undefined;

  constructor(
    private socket: Socket,
    private tls: boolean,
    private readonly opts: SinkOptions,
    private readonly context: SecureContext | undefined,
    private readonly record: SinkRecord,
  ) {
    this.listen(socket);
    // On the TCP socket, which outlives a TLS layer on top of it.
    socket.on("close", () => {
      if (this.mode === "data") record.unterminatedData.push(Buffer.from(this.buf));
      record.closedSessions++;
      record.emitter.emit("closed");
    });
    this.write(opts.greeting ?? "220 sink.test ESMTP");
  }

  private listen(socket: Socket): void {
    socket.on("data", this.onData);
    socket.on("error", () => socket.destroy());
  }

  private write(line: string): void {
    if (!this.socket.destroyed) this.socket.write(line + "\r\n");
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buf = Buffer.concat([this.buf, chunk]);
    const batch: string[] = [];
    this.record.commandBatches.push(batch);
    while (!this.socket.destroyed) {
      if (this.mode === "data") {
        const end = this.buf.subarray(0, 3).equals(Buffer.from(".\r\n")) ? 0 : this.buf.indexOf("\r\n.\r\n");
        if (end < 0) return;
        const rawLength = end === 0 ? 3 : end + 5;
        const raw = this.buf.subarray(0, rawLength);
        this.buf = this.buf.subarray(rawLength);
        this.mode = "command";
        this.endOfData(Buffer.from(raw));
        continue;
      }
      const eol = this.buf.indexOf(CRLF);
      if (eol < 0) return;
      const line = this.buf.subarray(0, eol).toString("utf8");
      this.buf = this.buf.subarray(eol + 2);
      if (this.mode === "auth") {
        this.mode = "command";
        this.checkPlain(line);
        continue;
      }
      batch.push(line);
      this.record.commands.push(line);
      if (this.command(line) === "upgrade") return;
    }
  };

  private resetTransaction(): void {
    this.from = undefined;
    this.mailParams = [];
    this.to = [];
    this.rcptParams = [];
  }

  private command(line: string): "upgrade" | undefined {
    const verb = line.split(" ", 1)[0].toUpperCase();
    const o = this.opts;
    switch (verb) {
      case "EHLO": {
        if (o.ehlo === false) return void this.write("502 5.5.1 EHLO not supported");
        this.helo = line.slice(5);
        this.resetTransaction();
        const ext = [`sink.test greets ${this.helo}`];
        if (o.pipelining !== false) ext.push("PIPELINING");
        if (o.size !== undefined) ext.push(`SIZE ${o.size}`);
        if (o.eightBitMime !== false) ext.push("8BITMIME");
        if (o.smtputf8) ext.push("SMTPUTF8");
        if (o.dsn) ext.push("DSN");
        if (o.requireTlsExtension && this.tls) ext.push("REQUIRETLS");
        if (this.context && !this.tls && (o.starttls ?? !o.implicitTls)) ext.push("STARTTLS");
        if (o.auth && !this.authUser) ext.push("AUTH PLAIN");
        ext.push("ENHANCEDSTATUSCODES");
        for (const [i, text] of ext.entries()) this.write(`250${i < ext.length - 1 ? "-" : " "}${text}`);
        return;
      }
      case "HELO":
        this.helo = line.slice(5);
        this.resetTransaction();
        return void this.write("250 sink.test");
      case "STARTTLS": {
        if (!this.context || this.tls) return void this.write("502 5.5.1 STARTTLS not available");
        // An injection rides in the same segment as the 220, as in the attacks it imitates.
        this.socket.write("220 2.0.0 Ready to start TLS\r\n" + (o.injectAfterStarttls ?? ""));
        // SECURITY rule 2: a client must not pipeline behind STARTTLS.
        if (this.buf.length > 0) return void this.socket.destroy();
        this.socket.off("data", this.onData);
        const secure = new TLSSocket(this.socket, { isServer: true, secureContext: this.context });
        this.socket = secure;
        this.tls = true;
        this.helo = "";
        this.authUser = undefined;
        this.resetTransaction();
        this.listen(secure);
        return "upgrade";
      }
      case "AUTH": {
        const [, mech, initial] = line.split(" ");
        if (!o.auth || mech?.toUpperCase() !== "PLAIN") return void this.write("504 5.5.4 Unrecognized authentication type");
        if (initial === undefined) {
          this.mode = "auth";
          return void this.write("334 ");
        }
        return void this.checkPlain(initial === "=" ? "" : initial);
      }
      case "MAIL": {
        if (o.requireTls && !this.tls) return void this.write("530 5.7.0 Must issue a STARTTLS command first");
        if (o.requireAuth && !this.authUser) return void this.write("530 5.7.0 Authentication required");
        const m = /^MAIL FROM:<([^>]*)>(.*)$/i.exec(line);
        if (!m) return void this.write("501 5.5.4 Syntax error");
        const params = m[2].trim().split(/\s+/).filter(Boolean);
        const size = params.find((p) => p.toUpperCase().startsWith("SIZE="));
        if (o.size && size && Number(size.slice(5)) > o.size) return void this.write("552 5.3.4 Message size exceeds fixed limit");
        const reply = o.mailReply?.(m[1], params) ?? "250 2.1.0 Ok";
        if (reply === "DROP") return void this.socket.destroy();
        if (reply.startsWith("2")) {
          this.from = m[1];
          this.mailParams = params;
        }
        return void this.write(reply);
      }
      case "RCPT": {
        if (this.from === undefined) return void this.write("503 5.5.1 Need MAIL first");
        const m = /^RCPT TO:<([^>]*)>(.*)$/i.exec(line);
        if (!m) return void this.write("501 5.5.4 Syntax error");
        const params = m[2].trim().split(/\s+/).filter(Boolean);
        const reply = o.rcptReply?.(m[1], params) ?? "250 2.1.5 Ok";
        if (reply.startsWith("2")) {
          this.to.push(m[1]);
          this.rcptParams.push(params);
        }
        return void this.write(reply);
      }
      case "DATA": {
        if (this.to.length === 0 && !o.dataWithoutRecipients) return void this.write("554 5.5.1 No valid recipients");
        const reply = o.dataStartReply?.() ?? "354 End data with <CR><LF>.<CR><LF>";
        if (reply.startsWith("354")) this.mode = "data";
        return void this.write(reply);
      }
      case "RSET":
        this.resetTransaction();
        return void this.write("250 2.0.0 Ok");
      case "NOOP":
        return void this.write("250 2.0.0 Ok");
      case "QUIT":
        this.write("221 2.0.0 Bye");
        return void this.socket.end();
      default:
        return void this.write("502 5.5.2 Command not recognized");
    }
  }

  private checkPlain(b64: string): void {
    if (b64 === "*") return void this.write("501 5.0.0 Authentication cancelled");
    const [authzid, authcid, password] = Buffer.from(b64, "base64").toString("utf8").split("\0");
    const ok = authcid === this.opts.auth?.username && password === this.opts.auth?.password && (!authzid || authzid === authcid);
    if (!ok) return void this.write("535 5.7.8 Authentication credentials invalid");
    this.authUser = authcid;
    this.write("235 2.7.0 Authentication successful");
  }

  private endOfData(raw: Buffer): void {
    const body = raw.subarray(0, raw.length - 3); // without ".\r\n"
    const message: SinkMessage = {
      from: this.from ?? "",
      to: this.to,
      mailParams: this.mailParams,
      rcptParams: this.rcptParams,
      data: unstuff(body),
      raw,
      tls: this.tls,
      authUser: this.authUser,
      helo: this.helo,
    };
    this.resetTransaction();
    let reply = this.opts.dataReply?.(message);
    if (reply === undefined && this.opts.size && message.data.length > this.opts.size) reply = "552 5.3.4 Message too big";
    reply ??= "250 2.0.0 Ok: queued";
    if (reply.startsWith("2")) {
      this.record.messages.push(message);
      this.record.emitter.emit("message");
    }
    this.write(reply);
  }
}

export async function startSink(opts: SinkOptions = {}): Promise<Sink> {
  const emitter = new EventEmitter();
  const record: SinkRecord = { messages: [], commands: [], commandBatches: [], unterminatedData: [], closedSessions: 0, emitter };
  const context = opts.tls ? createSecureContext({ key: opts.tls.key, cert: opts.tls.cert }) : undefined;
  const sockets = new Set<Socket>();
  const onSocket = (socket: Socket, tls: boolean) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    new SinkSession(socket, tls, opts, context, record);
  };
  let server: Server;
  if (opts.implicitTls) {
    if (!opts.tls) throw new Error("implicitTls needs tls");
    server = createTlsServer({ key: opts.tls.key, cert: opts.tls.cert }, (s) => onSocket(s, true));
  } else {
    server = createNetServer((s) => onSocket(s, false));
  }
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  /** Resolves once `done()` holds, checked now and after each `event`. */
  const waitFor = (event: string, done: () => boolean, progress: () => string, timeoutMs: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (!done()) return;
        clearTimeout(timer);
        emitter.off(event, check);
        resolve();
      };
      const timer = setTimeout(() => {
        emitter.off(event, check);
        reject(new Error(`sink: ${progress()} after ${timeoutMs} ms`));
      }, timeoutMs);
      emitter.on(event, check);
      check();
    });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("sink: no TCP address");

  return {
    port: address.port,
    messages: record.messages,
    commands: record.commands,
    commandBatches: record.commandBatches,
    unterminatedData: record.unterminatedData,
    get closedSessions() {
      return record.closedSessions;
    },
    waitForMessages: (n, timeoutMs = 10_000) =>
      waitFor(
        "message",
        () => record.messages.length >= n,
        () => `${record.messages.length} of ${n} messages`,
        timeoutMs,
      ),
    waitForClosedSessions: (n, timeoutMs = 10_000) =>
      waitFor(
        "closed",
        () => record.closedSessions >= n,
        () => `${record.closedSessions} of ${n} connections closed`,
        timeoutMs,
      ),
    dropSessions(): void {
      for (const s of sockets) s.destroy();
    },
    async close(): Promise<void> {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
