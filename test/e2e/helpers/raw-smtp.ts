/**
 * The tests' one byte-exact SMTP client (e2e tests and the dialog runner): write exactly these
 * bytes, read the next complete reply (multi-line aware), notice any byte at all (silence) and the
 * server closing, upgrade to TLS on demand. Received octets are kept as latin1, so 8-bit and NUL
 * bytes survive and a UTF-8 character split across reads is never garbled; replies are decoded as
 * UTF-8 unless the client was opened with `octets: true` (one character per octet).
 */
import type { Socket } from "node:net";
import { connectLocal, upgradeLocal } from "../../helpers/connect.js";

export interface SmtpReply {
  code: number;
  lines: string[];
  /** The reply lines joined with "\n" (CRLF removed). */
  text: string;
}

export interface OpenOptions {
  tls?: boolean;
  /** Bytes written right after the TCP connect, before any TLS (a PROXY protocol header). */
  prelude?: Buffer | string;
  /** Replies as octets (latin1), not UTF-8: a test can see exactly which bytes the server sent. */
  octets?: boolean;
}

export class RawSmtp {
  /** Unparsed octets, one latin1 character each. */
  private buffer = "";
  private wake: (() => void) | null = null;
  /** Set when the server (or the network) ended the connection. */
  closed = false;

  private constructor(
    private socket: Socket,
    private readonly octets: boolean,
  ) {
    this.listen(socket);
  }

  static async open(port: number, opts: OpenOptions = {}): Promise<RawSmtp> {
    let tcp: Socket | undefined;
    if (opts.prelude !== undefined) {
      tcp = await connectLocal(port);
      tcp.write(opts.prelude);
    }
    return new RawSmtp(await connectLocal(port, { tls: opts.tls, over: tcp }), opts.octets ?? false);
  }

  private listen(socket: Socket): void {
    socket.on("data", (d: Buffer) => {
      this.buffer += d.toString("latin1");
      this.wake?.();
    });
    socket.on("close", () => {
      this.closed = true;
      this.wake?.();
    });
    // A reset after the server closed is an expected end of many hostile conversations.
    socket.on("error", () => undefined);
  }

  write(data: string | Buffer): void {
    if (!this.socket.destroyed) this.socket.write(data);
  }

  /** Resolves when something happens (bytes, close) or after ms; true if something happened. */
  private event(ms: number): Promise<boolean> {
    return new Promise((ok) => {
      const timer = setTimeout(() => {
        this.wake = null;
        ok(false);
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        ok(true);
      };
    });
  }

  /** Reads one complete reply; rejects if the connection closes first or nothing comes in time. */
  async reply(timeoutMs = 10_000): Promise<SmtpReply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const parsed = takeReply(this.buffer);
      if (parsed) {
        this.buffer = parsed.rest;
        return this.octets ? parsed.reply : decodeUtf8(parsed.reply);
      }
      if (this.closed) throw new Error(`connection closed before a reply; unparsed: ${JSON.stringify(this.buffer)}`);
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.event(left))) {
        if (takeReply(this.buffer) === null) throw new Error(`no reply within ${timeoutMs} ms; buffered: ${JSON.stringify(this.buffer)}`);
      }
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

  /** True when no byte arrived (and the connection stayed open) for ms; `got` is what came instead. */
  async silent(ms: number): Promise<{ ok: boolean; got: string }> {
    if (this.buffer.length > 0 || this.closed) return { ok: false, got: this.buffer || "(closed)" };
    const happened = await this.event(ms);
    return { ok: !happened, got: this.buffer || (this.closed ? "(closed)" : "") };
  }

  /**
   * Waits for the server to close. `nothingMore`: fail as soon as the server sends another byte
   * instead (a dialog's "closed" step: the last reply read was the last one sent).
   */
  async waitClosed(timeoutMs = 10_000, { nothingMore = false } = {}): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (nothingMore && this.buffer.length > 0) break;
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.event(left))) break;
    }
    if (nothingMore && this.buffer.length > 0) throw new Error(`expected the connection closed, got more: ${JSON.stringify(this.buffer)}`);
    if (!this.closed) throw new Error(`connection still open after ${timeoutMs} ms`);
  }

  /** A new connection's opening: the 220 greeting, EHLO, STARTTLS and EHLO again; returns that EHLO's reply. */
  async greetAndStartTls(helo = "client.test"): Promise<SmtpReply> {
    const greeting = await this.reply();
    if (greeting.code !== 220) throw new Error(`expected a 220 greeting, got ${greeting.text}`);
    await this.expect(`EHLO ${helo}`, 250);
    await this.expect("STARTTLS", 220);
    await this.upgradeTls();
    return this.expect(`EHLO ${helo}`, 250);
  }

  async upgradeTls(): Promise<void> {
    this.socket = await upgradeLocal(this.socket);
    this.buffer = "";
    this.listen(this.socket);
  }

  close(): void {
    this.socket.destroy();
  }
}

function decodeUtf8(r: SmtpReply): SmtpReply {
  const utf8 = (s: string) => Buffer.from(s, "latin1").toString("utf8");
  return { code: r.code, lines: r.lines.map(utf8), text: utf8(r.text) };
}

/** Splits one complete (possibly multi-line) reply off the front of the buffer, or null. */
function takeReply(buf: string): { reply: SmtpReply; rest: string } | null {
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

/** One AUTH PLAIN on a new implicit-TLS connection (port 465): the reply code. */
export async function authPlainCode(port: number, user: string, password: string): Promise<number> {
  const c = await RawSmtp.open(port, { tls: true });
  try {
    await c.reply();
    await c.expect("EHLO client.test", 250);
    return (await c.cmd(`AUTH PLAIN ${b64(`\0${user}\0${password}`)}`)).code;
  } finally {
    c.close();
  }
}
