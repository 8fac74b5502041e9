/**
 * DKIM "relaxed" canonicalisation (RFC 6376 §3.4.2, §3.4.4), the body part as a stream: the body
 * is hashed as it goes to the queue store, chunk by chunk, and a chunk may end anywhere (inside a
 * CRLF, inside a run of white space, among the empty lines that may turn out to be the body's end).
 * What is still undecided at a chunk's end is kept as state, never as bytes: a pending CR, "white
 * space seen" and a count of line ends not yet written.
 */
import { createHash, type Hash } from "node:crypto";

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;

/** SHA-256 of the relaxed-canonical body, fed in pieces. */
export class RelaxedBodyHash {
  private readonly hash: Hash = createHash("sha256");
  private readonly out = Buffer.allocUnsafe(64 * 1024);
  private pos = 0;
  /** A CR ended the last chunk: a line end if LF follows. */
  private cr = false;
  /** White space since the last character of this line: one SP if more text follows on the line, none at its end. */
  private space = false;
  /** Line ends since the last text: written only if more text follows (§3.4.4 b: empty lines at the end go). */
  private lineEnds = 0;
  private text = false;
  private finished = false;

  update(chunk: Uint8Array): void {
    // State in locals, output written in place: this runs for every byte of every signed message.
    const out = this.out;
    const limit = out.length - 3;
    let pos = this.pos;
    let cr = this.cr;
    let space = this.space;
    let lineEnds = this.lineEnds;
    let text = this.text;
    for (let i = 0, n = chunk.length; i < n; i++) {
      let b: number;
      if (cr) {
        cr = false;
        if (chunk[i] === LF) {
          // §3.4.4 a: white space at a line's end is dropped.
          space = false;
          lineEnds++;
          continue;
        }
        // A CR that ends no line is text (the readers store none; stay exact anyway).
        b = CR;
        i--; // and this byte again, after it
      } else {
        b = chunk[i]!;
        if (b === CR) {
          cr = true;
          continue;
        }
        if (b === SP || b === HTAB) {
          space = true;
          continue;
        }
      }
      for (; lineEnds > 0; lineEnds--) {
        if (pos >= limit) {
          this.hash.update(out.subarray(0, pos));
          pos = 0;
        }
        out[pos++] = CR;
        out[pos++] = LF;
      }
      if (pos >= limit) {
        this.hash.update(out.subarray(0, pos));
        pos = 0;
      }
      if (space) {
        out[pos++] = SP; // §3.4.4 a: a run of white space is one SP
        space = false;
      }
      out[pos++] = b;
      text = true;
    }
    this.pos = pos;
    this.cr = cr;
    this.space = space;
    this.lineEnds = lineEnds;
    this.text = text;
  }

  /** The body hash; nothing may be added afterwards. */
  digest(): Buffer {
    if (this.finished) throw new Error("body hash already taken");
    this.finished = true;
    if (this.cr) this.put(CR);
    // §3.4.4: a non-empty body ends with exactly one CRLF; an empty one stays empty.
    if (this.text) {
      this.room(2);
      this.out[this.pos++] = CR;
      this.out[this.pos++] = LF;
    }
    this.hash.update(this.out.subarray(0, this.pos));
    this.pos = 0;
    return this.hash.digest();
  }

  /** One text byte, after what was pending before it. */
  private put(b: number): void {
    while (this.lineEnds > 0) {
      this.room(2);
      this.out[this.pos++] = CR;
      this.out[this.pos++] = LF;
      this.lineEnds--;
    }
    this.room(2);
    if (this.space) {
      this.out[this.pos++] = SP; // §3.4.4 a: a run of white space is one SP
      this.space = false;
    }
    this.out[this.pos++] = b;
    this.text = true;
  }

  private room(bytes: number): void {
    if (this.pos + bytes <= this.out.length) return;
    this.hash.update(this.out.subarray(0, this.pos));
    this.pos = 0;
  }
}

/** One header field as stored: its name and the whole field (name, colon, value, folding), without the final CRLF. */
export interface RawField {
  name: string;
  raw: string;
}

/**
 * The fields of a header section (as latin1 text, so bytes stay bytes), in order. The section may
 * end with its empty line or not (a message that is all header). Null when it does not end with a
 * CRLF: it was cut (held past its bound) and cannot be read whole.
 */
export function splitHeaderSection(section: string): RawField[] | null {
  let text = section;
  if (text.endsWith("\r\n\r\n")) text = text.slice(0, -2);
  else if (text === "\r\n") return [];
  if (!text.endsWith("\r\n")) return null;
  const fields: RawField[] = [];
  for (const raw of text.slice(0, -2).split(/\r\n(?![ \t])/)) {
    const colon = raw.indexOf(":");
    fields.push({ name: colon < 0 ? "" : raw.slice(0, colon).replace(/[ \t]+$/, ""), raw });
  }
  return fields;
}

/** §3.4.2: name lower-cased, unfolded, white space runs to one SP, none at the ends of the value or around the colon. */
export function relaxedHeader(raw: string): string {
  const colon = raw.indexOf(":");
  const name = raw
    .slice(0, colon)
    .replace(/[ \t]+$/, "")
    .toLowerCase();
  const value = raw
    .slice(colon + 1)
    .replace(/\r\n/g, "")
    .replace(/[ \t]+/g, " ")
    .replace(/^ | $/g, "");
  return `${name}:${value}`;
}
