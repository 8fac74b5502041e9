/**
 * A probing SMTP connection: exact bytes out (so a bare LF can be sent on purpose), strict replies
 * in, STARTTLS with caller-chosen TLS options (old protocol versions included). Unlike the
 * delivery client it never refuses to try something: finding out is its job.
 */
import { connect as netConnect, isIP, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from "node:tls";
import { ReplyParser, type SmtpReply } from "../delivery/smtp-reply.js";

export class ProbeClosed extends Error {}

export function sni(name: string): string | undefined {
  return isIP(name) ? undefined : name; // RFC 6066 §3: no IP literals in server_name
}

export class Probe {
  private parser = new ReplyParser();
  private readonly replies: SmtpReply[] = [];
  private wake: (() => void) | undefined;
  private error: Error | undefined;
  closed = false;

  private constructor(
    private socket: Socket,
    private readonly timeoutMs: number,
  ) {
    this.listen(socket);
  }

  /** Connects (implicit TLS when `tls` is given) and returns once the connection is up. */
  static async open(host: string, port: number, timeoutMs: number, tls?: ConnectionOptions): Promise<Probe> {
    const socket = tls ? tlsConnect({ host, port, ...tls }) : netConnect({ host, port });
    await waitFor(socket, tls ? "secureConnect" : "connect", timeoutMs);
    return new Probe(socket, timeoutMs);
  }

  /** The server's address as connected (a relay trick uses it as an IP literal). */
  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress?.replace(/^::ffff:(?=\d+\.)/, "");
  }

  get tlsSocket(): TLSSocket {
    return this.socket as TLSSocket;
  }

  private listen(socket: Socket): void {
    socket.on("data", (chunk: Buffer) => {
      try {
        this.replies.push(...this.parser.push(chunk));
      } catch (err) {
        this.error = err as Error;
      }
      this.wake?.();
    });
    socket.on("close", () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on("error", (err) => {
      this.error ??= err;
      this.wake?.();
    });
  }

  async reply(): Promise<SmtpReply> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const r = this.replies.shift();
      if (r) return r;
      if (this.error) throw this.error;
      if (this.closed) throw new ProbeClosed("connection closed by the server");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${this.timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          this.wake = undefined;
          resolve();
        };
      });
    }
  }

  write(bytes: string): void {
    this.socket.write(bytes);
  }

  cmd(line: string): Promise<SmtpReply> {
    this.write(line + "\r\n");
    return this.reply();
  }

  /** EHLO, falling back to nothing: the caller decides what a refusal means. */
  async ehlo(name: string): Promise<SmtpReply> {
    return this.cmd(`EHLO ${name}`);
  }

  /** STARTTLS (RFC 3207) and the handshake; returns the STARTTLS reply when it was not 220. */
  async starttls(host: string, tls: ConnectionOptions): Promise<SmtpReply | null> {
    const r = await this.cmd("STARTTLS");
    if (r.code !== 220) return r;
    const plain = this.socket;
    plain.removeAllListeners("data");
    plain.removeAllListeners("close");
    plain.removeAllListeners("error");
    plain.on("error", () => undefined); // surfaces on the TLS socket
    const secure = tlsConnect({ socket: plain, ...tls, servername: tls.servername ?? sni(host) });
    this.socket = secure;
    this.parser = new ReplyParser();
    this.listen(secure);
    await waitFor(secure, "secureConnect", this.timeoutMs);
    return null;
  }

  async quit(): Promise<void> {
    if (!this.closed && !this.socket.destroyed) {
      this.write("QUIT\r\n");
      await this.reply().catch(() => undefined);
    }
    this.socket.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function waitFor(socket: Socket, event: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`timeout after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once(event, () => {
      clearTimeout(timer);
      socket.removeListener("error", onError);
      resolve();
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    socket.once("error", onError);
  });
}
