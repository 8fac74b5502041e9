/**
 * Bytes received on the command channel that have not been consumed yet.
 * Splits them into CRLF-terminated lines, bounded, on Buffers (SECURITY rule 3).
 *
 * Only CRLF ends a line (RFC 5321 §2.3.8, §4.1.1; SECURITY rule 1): a bare LF, or a
 * CR followed by anything but LF, is reported as an error instead of being
 * treated as a line end — that ambiguity is what SMTP smuggling exploits.
 */

export type LineError = "too-long" | "bare-lf" | "bare-cr";

/** Lines starting with `prefix` may be up to `maxLength` long (AUTH with an initial response). */
export interface LongerLine {
  prefix: string;
  maxLength: number;
}

export type LineResult = { kind: "line"; line: Buffer } | { kind: "error"; error: LineError };

const CR = 0x0d;
const LF = 0x0a;
const INITIAL_CAPACITY = 1024;

export class InputBuffer {
  /** Pending bytes are buf[start, end). */
  private buf = Buffer.allocUnsafe(INITIAL_CAPACITY);
  private start = 0;
  private end = 0;
  /**
   * buf[start, scanned) is known to hold no CR or LF, so a line arriving in many
   * small pieces is scanned once overall rather than once per piece.
   */
  private scanned = 0;

  get pendingLength(): number {
    return this.end - this.start;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.reserve(chunk.length);
    chunk.copy(this.buf, this.end);
    this.end += chunk.length;
  }

  /**
   * Returns the next line without its CRLF, an error, or null when more bytes
   * are needed. maxLength bounds the line without CRLF; it is reported as soon
   * as more than maxLength bytes are pending with no line end among them.
   * Errors consume nothing and repeat on the next call: the caller is expected
   * to reply and close the connection.
   */
  takeLine(maxLength: number, longer?: LongerLine): LineResult | null {
    const { buf, end } = this;
    let i = this.scanned;
    while (i < end && buf[i] !== CR && buf[i] !== LF) i++;
    this.scanned = i;
    const lineLength = i - this.start;
    if (lineLength > maxLength && !(longer && lineLength <= longer.maxLength && this.startsWith(longer.prefix))) {
      return { kind: "error", error: "too-long" };
    }
    if (i === end) return null;
    if (buf[i] === LF) return { kind: "error", error: "bare-lf" };
    // buf[i] is CR: a CR as the last pending byte may still be the start of CRLF.
    if (i + 1 === end) return null;
    if (buf[i + 1] !== LF) return { kind: "error", error: "bare-cr" };
    const line = Buffer.from(buf.subarray(this.start, i));
    this.consume(lineLength + 2);
    return { kind: "line", line };
  }

  /** The pending bytes begin with `prefix` (upper-case ASCII), ASCII case ignored. */
  private startsWith(prefix: string): boolean {
    if (this.end - this.start < prefix.length) return false;
    for (let k = 0; k < prefix.length; k++) {
      if ((this.buf[this.start + k]! & 0xdf) !== prefix.charCodeAt(k) && this.buf[this.start + k] !== prefix.charCodeAt(k)) return false;
    }
    return true;
  }

  /** Everything pending (a copy), leaving the buffer empty; used when DATA starts. */
  takeAll(): Buffer {
    const all = Buffer.from(this.buf.subarray(this.start, this.end));
    this.clear();
    return all;
  }

  clear(): void {
    this.start = this.end = this.scanned = 0;
    if (this.buf.length > INITIAL_CAPACITY) this.buf = Buffer.allocUnsafe(INITIAL_CAPACITY);
  }

  private consume(n: number): void {
    this.start += n;
    if (this.scanned < this.start) this.scanned = this.start;
    if (this.start === this.end) this.start = this.end = this.scanned = 0;
  }

  /** Makes room for n more bytes: first by moving pending bytes to the front, else by doubling. */
  private reserve(n: number): void {
    if (this.end + n <= this.buf.length) return;
    const pending = this.end - this.start;
    if (pending + n <= this.buf.length && this.start >= this.buf.length / 2) {
      this.buf.copy(this.buf, 0, this.start, this.end);
    } else {
      let capacity = this.buf.length;
      while (capacity < pending + n) capacity *= 2;
      const grown = Buffer.allocUnsafe(capacity);
      this.buf.copy(grown, 0, this.start, this.end);
      this.buf = grown;
    }
    this.scanned -= this.start;
    this.start = 0;
    this.end = pending;
  }
}
