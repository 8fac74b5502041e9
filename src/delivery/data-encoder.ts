/**
 * Turns message bytes into the DATA stream of RFC 5321 §4.1.1.4 / §4.5.2:
 *  - every line ends with CRLF: a bare LF or a bare CR becomes CRLF (SECURITY rule 1 — our client
 *    must never emit a lone CR or LF, or it becomes the relay half of SMTP smuggling);
 *  - a line starting with "." gets one more "." (transparency, §4.5.2);
 *  - end() closes the last line if needed and appends the terminating ".\r\n".
 * State carries across chunk boundaries (a CR at a chunk's end, a "." at the next chunk's start).
 * All other bytes, 8-bit included, pass through untouched.
 */
const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const CRLF = Buffer.from("\r\n");
const DOT_BYTE = Buffer.from(".");

export class DataEncoder {
  private atLineStart = true;
  /** A CR was seen and the byte after it has not been: it becomes CRLF either way. */
  private pendingCR = false;
  private ended = false;

  push(chunk: Buffer): Buffer {
    if (this.ended) throw new Error("DataEncoder already ended");
    const parts: Buffer[] = [];
    let runStart = 0; // start of the current run of bytes copied unchanged
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i];
      if (this.pendingCR) {
        this.pendingCR = false;
        parts.push(CRLF);
        this.atLineStart = true;
        if (byte === LF) {
          runStart = i + 1;
          continue;
        }
        runStart = i; // the CR was bare: it has been written as CRLF; go on with this byte
      }
      if (byte === CR || byte === LF) {
        if (i > runStart) parts.push(chunk.subarray(runStart, i));
        if (byte === CR) {
          this.pendingCR = true;
        } else {
          parts.push(CRLF); // bare LF
          this.atLineStart = true;
        }
        runStart = i + 1;
        continue;
      }
      if (this.atLineStart && byte === DOT) {
        if (i > runStart) parts.push(chunk.subarray(runStart, i));
        parts.push(DOT_BYTE); // stuffed dot; the original one starts the next run
        runStart = i;
      }
      this.atLineStart = false;
    }
    if (chunk.length > runStart) parts.push(chunk.subarray(runStart));
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  /** The bytes that finish the stream: pending line end, CRLF if the last line was open, ".CRLF". */
  end(): Buffer {
    if (this.ended) throw new Error("DataEncoder already ended");
    this.ended = true;
    let tail = "";
    if (this.pendingCR) {
      tail += "\r\n";
      this.pendingCR = false;
      this.atLineStart = true;
    }
    if (!this.atLineStart) tail += "\r\n";
    return Buffer.from(tail + ".\r\n");
  }
}

/** Convenience for tests and small messages. */
export function encodeData(message: Buffer): Buffer {
  const encoder = new DataEncoder();
  return Buffer.concat([encoder.push(message), encoder.end()]);
}
