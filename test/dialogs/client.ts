/**
 * The dialog runner's client: writes exact bytes, reads replies (multi-line aware, octets kept as
 * latin1 so 8-bit and NUL bytes survive), notices any byte at all ("silent") and the server closing.
 */
import type { Socket } from "node:net";
import { connectLocal, upgradeLocal } from "../helpers/connect.js";
import { takeReply } from "../e2e/helpers/raw-smtp.js";

export interface DialogReply {
  code: number;
  /** The reply lines joined with "\n" (CRLF removed). */
  text: string;
}

export class DialogClient {
  private buffer = "";
  private wake: (() => void) | null = null;
  /** Set when the server (or the network) ended the connection. */
  closed = false;

  private constructor(private socket: Socket) {
    this.listen(socket);
  }

  static async open(port: number, implicitTls: boolean): Promise<DialogClient> {
    return new DialogClient(await connectLocal(port, { tls: implicitTls }));
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
    // A reset after the server closed is an expected end of many hostile dialogs.
    socket.on("error", () => undefined);
  }

  write(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
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

  /** The next complete reply; throws if the connection closes or nothing comes within ms. */
  async reply(ms: number): Promise<DialogReply> {
    const deadline = Date.now() + ms;
    for (;;) {
      const r = takeReply(this.buffer);
      if (r) {
        this.buffer = r.rest;
        return r.reply;
      }
      if (this.closed) throw new Error(`connection closed before a reply; unparsed: ${JSON.stringify(this.buffer)}`);
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.event(left))) {
        if (takeReply(this.buffer) === null) throw new Error(`no reply within ${ms} ms; buffered: ${JSON.stringify(this.buffer)}`);
      }
    }
  }

  /** True when no byte arrived (and the connection stayed open) for ms. */
  async silent(ms: number): Promise<{ ok: boolean; got: string }> {
    if (this.buffer.length > 0 || this.closed) return { ok: false, got: this.buffer || "(closed)" };
    const happened = await this.event(ms);
    return { ok: !happened, got: this.buffer || (this.closed ? "(closed)" : "") };
  }

  /** Waits for the server to close; fails if it sends another reply first. */
  async waitClosed(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      if (this.buffer.length > 0) break;
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.event(left))) break;
    }
    if (this.buffer.length > 0) throw new Error(`expected the connection closed, got more: ${JSON.stringify(this.buffer)}`);
    if (!this.closed) throw new Error(`connection still open after ${ms} ms`);
  }

  async upgradeTls(): Promise<void> {
    this.socket = await upgradeLocal(this.socket);
    this.buffer = "";
    this.listen(this.socket);
  }

  destroy(): void {
    this.socket.destroy();
  }
}
