/**
 * Client of Dovecot's authentication protocol (the "auth-client" socket, as Postfix's
 * smtpd_sasl_type=dovecot uses it; Dovecot docs "Authentication Protocol" v1.x): a handshake
 * (we send VERSION and CPID; Dovecot sends VERSION, MECH…, SPID, CUID, COOKIE, DONE), then AUTH
 * requests with CONT/OK/FAIL replies, many requests multiplexed on one connection by id.
 *
 * It never blocks start-up: it connects in the background, reconnects with back-off, and until
 * the handshake is done it offers no mechanisms (AUTH gets 504, a lost connection 454).
 */
import { connect, type Socket } from "node:net";
import type { InfoWarnLog } from "../base/log.js";

export interface DovecotAuthOptions {
  /** "unix:/run/dovecot/auth-client", a bare absolute path, or "host:port". */
  socket: string;
  service: string;
  /** Per request step: Dovecot's own answer time (including its auth_failure_delay) must fit. */
  timeoutMs?: number;
  log?: InfoWarnLog;
}

export interface DovecotReply {
  kind: "CONT" | "OK" | "FAIL";
  /** CONT: the base64 challenge. */
  data?: string;
  params: Map<string, string>;
}

/** Dovecot's tab-escaping: \001 is the escape character (SECURITY.md rule 15). */
export function tabEscape(text: string): string {
  return text.replace(/[\x00\x01\t\r\n]/g, (c) => "\x01" + ({ "\x00": "0", "\x01": "1", "\t": "t", "\r": "r", "\n": "n" } as Record<string, string>)[c]);
}

export function tabUnescape(text: string): string {
  return text.replace(/\x01(.)/g, (_m, c: string) => (({ "0": "\x00", "1": "\x01", t: "\t", r: "\r", n: "\n" }) as Record<string, string>)[c] ?? c);
}

function parseParams(fields: string[]): Map<string, string> {
  const params = new Map<string, string>();
  for (const f of fields) {
    const eq = f.indexOf("=");
    if (eq < 0) params.set(f, "");
    else params.set(f.slice(0, eq), tabUnescape(f.slice(eq + 1)));
  }
  return params;
}

interface Pending {
  resolve(reply: DovecotReply): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export class DovecotAuthClient {
  private sock: Socket | null = null;
  private buffer = "";
  private handshake: { mechs: string[]; done: boolean } = { mechs: [], done: false };
  private ready: string[] | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private retryMs = 500;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly readyWaiters: (() => void)[] = [];

  constructor(private readonly opts: DovecotAuthOptions) {}

  /** Connects in the background; returns at once. */
  start(): void {
    this.connect();
  }

  /** Mechanisms from the last handshake (upper case); empty while not connected. */
  mechanisms(): string[] {
    return this.ready ?? [];
  }

  /** Resolves once a handshake has completed (tests, `postern check`). */
  whenReady(): Promise<void> {
    return this.ready ? Promise.resolve() : new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  private connect(): void {
    if (this.closed) return;
    const s = this.opts.socket;
    const unix = s.startsWith("unix:") ? s.slice(5) : s.startsWith("/") ? s : null;
    let sock: Socket;
    if (unix !== null) sock = connect(unix);
    else {
      const i = s.lastIndexOf(":");
      sock = connect(Number(s.slice(i + 1)), s.slice(0, i).replace(/^\[|\]$/g, ""));
    }
    this.sock = sock;
    this.buffer = "";
    this.handshake = { mechs: [], done: false };
    sock.setEncoding("utf8");
    sock.unref();
    sock.on("connect", () => sock.write(`VERSION\t1\t2\nCPID\t${process.pid}\n`));
    sock.on("data", (chunk: string) => this.received(chunk));
    sock.on("error", (err) => this.opts.log?.warn({ event: "auth-backend-error", backend: "dovecot", err: err.message }, "Dovecot auth connection failed"));
    sock.on("close", () => this.lost());
  }

  private lost(): void {
    this.sock = null;
    this.ready = null;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error("Dovecot auth connection closed"));
      this.pending.delete(id);
    }
    if (this.closed) return;
    this.retryTimer = setTimeout(() => this.connect(), this.retryMs);
    this.retryTimer.unref();
    this.retryMs = Math.min(this.retryMs * 2, 30_000);
  }

  private received(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf("\n")) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      this.line(line.split("\t"));
    }
    if (this.buffer.length > 65536) this.sock?.destroy(new Error("Dovecot sent an over-long line"));
  }

  private line(fields: string[]): void {
    const [cmd, ...args] = fields;
    if (!this.handshake.done) {
      if (cmd === "VERSION" && args[0] !== "1") this.sock?.destroy(new Error(`Dovecot auth protocol version ${args[0]} not supported`));
      else if (cmd === "MECH" && args[0]) this.handshake.mechs.push(tabUnescape(args[0]).toUpperCase());
      else if (cmd === "DONE") {
        this.handshake.done = true;
        this.ready = this.handshake.mechs;
        this.retryMs = 500;
        this.opts.log?.info({ event: "auth-backend-ready", backend: "dovecot", mechanisms: this.ready }, "Dovecot auth connected");
        for (const w of this.readyWaiters.splice(0)) w();
      }
      return;
    }
    if (cmd !== "CONT" && cmd !== "OK" && cmd !== "FAIL") return;
    const id = Number(args[0]);
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (cmd === "CONT") p.resolve({ kind: "CONT", data: args[1] ?? "", params: new Map() });
    else p.resolve({ kind: cmd, params: parseParams(args.slice(1)) });
  }

  private send(id: number, line: string): Promise<DovecotReply> {
    const sock = this.sock;
    if (!sock || !this.ready) return Promise.reject(new Error("Dovecot auth is not connected"));
    return new Promise((resolve, reject) => {
      const timeoutMs = this.opts.timeoutMs ?? 10_000;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`Dovecot auth did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      sock.write(line + "\n");
    });
  }

  /** Starts a SASL exchange; `initial` is the decoded initial response (null: none). */
  begin(mechanism: string, initial: Buffer | null, context: { remoteIp?: string; localIp?: string }): { id: number; reply: Promise<DovecotReply> } {
    const id = this.nextId++;
    // `secured`: Postern only lets AUTH start over TLS (or where the admin allowed cleartext), so
    // Dovecot's disable_plaintext_auth is already satisfied. `no-penalty`: our own throttle counts.
    const fields = ["AUTH", String(id), tabEscape(mechanism), `service=${tabEscape(this.opts.service)}`, "secured", "no-penalty"];
    if (context.remoteIp) fields.push(`rip=${tabEscape(context.remoteIp)}`);
    if (context.localIp) fields.push(`lip=${tabEscape(context.localIp)}`);
    if (initial !== null) fields.push(`resp=${initial.toString("base64")}`);
    return { id, reply: this.send(id, fields.join("\t")) };
  }

  /** Continues exchange `id` with the client's decoded response. */
  continue(id: number, response: Buffer): Promise<DovecotReply> {
    return this.send(id, `CONT\t${id}\t${response.toString("base64")}`);
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.sock?.destroy();
  }
}
