/**
 * A byte-exact SMTP client for hostile conversations: write exactly these bytes, then read the
 * next complete reply (multi-line aware), upgrade to TLS on demand, observe the server closing.
 */
import type { Socket } from "node:net";
import { connectLocal, upgradeLocal } from "../../helpers/connect.js";

export interface SmtpReply {
  code: number;
  lines: string[];
  text: string;
}

export class RawSmtp {
  private buffer = "";
  private waiting: (() => void) | null = null;
  closed = false;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;

  private constructor(private socket: Socket) {
    this.closedPromise = new Promise((r) => (this.resolveClosed = r));
    this.listen(socket);
  }

  /** prelude: bytes written right after the TCP connect, before any TLS (a PROXY protocol header). */
  static async open(port: number, opts: { tls?: boolean; prelude?: Buffer | string } = {}): Promise<RawSmtp> {
    let tcp: Socket | undefined;
    if (opts.prelude !== undefined) {
      tcp = await connectLocal(port);
      tcp.write(opts.prelude);
    }
    return new RawSmtp(await connectLocal(port, { tls: opts.tls, over: tcp }));
  }

  private listen(socket: Socket): void {
    socket.on("data", (d: Buffer) => {
      this.buffer += d.toString("utf8");
      this.waiting?.();
    });
    socket.on("close", () => {
      this.closed = true;
      this.resolveClosed();
      this.waiting?.();
    });
    socket.on("error", () => undefined);
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Reads one complete reply; rejects if the connection closes first. */
  async reply(timeoutMs = 10_000): Promise<SmtpReply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const parsed = takeReply(this.buffer);
      if (parsed) {
        this.buffer = parsed.rest;
        return parsed.reply;
      }
      if (this.closed) throw new Error(`connection closed; unparsed: ${JSON.stringify(this.buffer)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${timeoutMs} ms; buffered: ${JSON.stringify(this.buffer)}`);
      await new Promise<void>((ok) => {
        const t = setTimeout(ok, left);
        this.waiting = () => (clearTimeout(t), (this.waiting = null), ok());
      });
    }
  }

  /** Sends a command line (CRLF added) and returns the reply. */
  async cmd(line: string): Promise<SmtpReply> {
    this.write(line + "\r\n");
    return this.reply();
  }

  async expect(line: string, code: number): Promise<SmtpReply> {
    const r = await this.cmd(line);
    if (r.code !== code) throw new Error(`${line}: expected ${code}, got ${r.text}`);
    return r;
  }

  async upgradeTls(): Promise<void> {
    this.socket = await upgradeLocal(this.socket);
    this.buffer = "";
    this.listen(this.socket);
  }

  async waitClosed(timeoutMs = 10_000): Promise<void> {
    await Promise.race([
      this.closedPromise,
      new Promise((_, fail) => setTimeout(() => fail(new Error("connection not closed")), timeoutMs).unref()),
    ]);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Splits one complete (possibly multi-line) reply off the front of the buffer, or null. */
export function takeReply(buf: string): { reply: SmtpReply; rest: string } | null {
  const lines: string[] = [];
  let pos = 0;
  for (;;) {
    const end = buf.indexOf("\r\n", pos);
    if (end < 0) return null;
    const line = buf.slice(pos, end);
    pos = end + 2;
    lines.push(line);
    if (line.length < 4 || line[3] !== "-") {
      const code = Number(line.slice(0, 3));
      return { reply: { code, lines, text: lines.join("\n") }, rest: buf.slice(pos) };
    }
  }
}

export const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
