/**
 * The load generator's SMTP client: a thin layer over one socket that parses replies (multi-line,
 * RFC 5321 §4.2.1), upgrades with STARTTLS (RFC 3207) and counts every reply code it sees.
 * Deliberately ours and minimal, so the client costs the same against every contender.
 */
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket, type SecureContext } from "node:tls";

export interface SmtpReply {
  code: number;
  lines: string[];
}

export type TlsMode = "none" | "starttls" | "implicit";

export class ReplyError extends Error {
  constructor(
    readonly step: string,
    readonly reply: SmtpReply,
  ) {
    super(`${step}: ${reply.code} ${reply.lines.join(" | ")}`);
  }
}

export class BenchSmtpClient {
  private buffered = "";
  private lines: string[] = [];
  private waiting: { resolve(r: SmtpReply): void; reject(e: Error): void }[] = [];
  private ready: SmtpReply[] = [];
  private failure: Error | null = null;

  private constructor(
    private socket: Socket,
    readonly codes: Map<number, number>,
  ) {
    this.listen(socket);
  }

  /** Connects, reads the greeting, and for implicit TLS completes the handshake first. */
  static async open(
    port: number,
    tls: TlsMode,
    codes: Map<number, number>,
    tlsOptions: { secureContext?: SecureContext; session?: Buffer } = {},
  ): Promise<{ client: BenchSmtpClient; greeting: SmtpReply }> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s: Socket =
        tls === "implicit"
          ? tlsConnect({ host: "127.0.0.1", port, rejectUnauthorized: false, ...tlsOptions }, () => resolve(s))
          : netConnect({ host: "127.0.0.1", port }, () => resolve(s));
      s.once("error", reject);
    });
    socket.setNoDelay(true);
    const client = new BenchSmtpClient(socket, codes);
    const greeting = await client.read();
    return { client, greeting };
  }

  get tlsSocket(): TLSSocket | null {
    return "encrypted" in this.socket ? (this.socket as TLSSocket) : null;
  }

  private listen(socket: Socket): void {
    socket.setEncoding("latin1");
    socket.on("data", (text: string) => this.received(text));
    socket.on("error", (err) => this.fail(err));
    socket.on("close", () => this.fail(new Error("connection closed by server")));
  }

  private received(text: string): void {
    this.buffered += text;
    let at: number;
    while ((at = this.buffered.indexOf("\r\n")) >= 0) {
      const line = this.buffered.slice(0, at);
      this.buffered = this.buffered.slice(at + 2);
      this.lines.push(line);
      if (line.length >= 4 && line[3] === "-") continue;
      const r: SmtpReply = { code: Number(line.slice(0, 3)), lines: this.lines.map((l) => l.slice(4)) };
      this.lines = [];
      this.codes.set(r.code, (this.codes.get(r.code) ?? 0) + 1);
      const w = this.waiting.shift();
      if (w) w.resolve(r);
      else this.ready.push(r);
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.splice(0)) w.reject(err);
  }

  /** The next reply, in order (pipelined replies queue up). */
  read(): Promise<SmtpReply> {
    const r = this.ready.shift();
    if (r) return Promise.resolve(r);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /** Writes raw bytes; resolves once the socket buffer drained (back-pressure for big messages). */
  write(data: string | Buffer): Promise<void> {
    if (this.socket.write(data)) return Promise.resolve();
    return new Promise((resolve) => this.socket.once("drain", resolve));
  }

  async command(line: string, expect: number, step = line.split(" ")[0]!): Promise<SmtpReply> {
    void this.write(line + "\r\n");
    const r = await this.read();
    if (r.code !== expect) throw new ReplyError(step, r);
    return r;
  }

  async startTls(tlsOptions: { secureContext?: SecureContext; session?: Buffer } = {}): Promise<void> {
    await this.command("STARTTLS", 220);
    const raw = this.socket;
    raw.removeAllListeners("data");
    raw.removeAllListeners("close");
    raw.removeAllListeners("error");
    this.socket = await new Promise<TLSSocket>((resolve, reject) => {
      const s = tlsConnect({ socket: raw, rejectUnauthorized: false, ...tlsOptions }, () => resolve(s));
      s.once("error", reject);
    });
    this.listen(this.socket);
  }

  async auth(mechanism: "PLAIN" | "LOGIN", user: string, password: string): Promise<void> {
    if (mechanism === "PLAIN") {
      await this.command(`AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString("base64")}`, 235, "AUTH");
      return;
    }
    await this.command("AUTH LOGIN", 334, "AUTH");
    await this.command(Buffer.from(user).toString("base64"), 334, "AUTH");
    await this.command(Buffer.from(password).toString("base64"), 235, "AUTH");
  }

  /** Sends QUIT (best effort) and closes. */
  async quit(): Promise<void> {
    if (!this.failure) {
      void this.write("QUIT\r\n");
      await this.read().catch(() => undefined);
    }
    this.destroy();
  }

  destroy(): void {
    this.failure ??= new Error("closed");
    this.socket.destroy();
  }
}
