/**
 * Reads the DATA body (RFC 5321 §4.1.1.4): finds the end of data, removes
 * dot-stuffing (§4.5.2), and bounds line length (§4.5.3.1.6) and message size.
 *
 * The message ends only at CRLF "." CRLF (SECURITY rule 1; SMTP smuggling,
 * CVE-2023-51764/51765/51766). A bare CR or LF is never a line end for the
 * terminator hunt: it is either refused at once, or (when an admin chose
 * "normalize") stored as CRLF while still not counting towards a terminator.
 *
 * Streaming: each push does O(chunk) work and keeps at most two bytes of state
 * (a pending "." and/or CR) between pushes.
 */

export type DataError = "bare-line-end" | "line-too-long" | "too-big";

export interface DataPush {
  /** Dot-unstuffed message bytes to store, with CRLF line ends. */
  data: Buffer[];
  /** True exactly once: at the terminator, or at once on a refused bare line end. */
  done: boolean;
  /** Bytes received after the terminator (pipelined commands), when done; a view into the pushed chunk. */
  rest?: Buffer;
  error?: DataError;
}

export interface DataReaderOptions {
  /**
   * Longest text line including CRLF (RFC 5321 §4.5.3.1.6), counted after unstuffing: the dot
   * §4.5.2 adds in front of a line is transport, not text, so ".". + 998 octets on the wire is a
   * line of 998.
   */
  maxLineLength?: number;
  /** Largest message in stored bytes. */
  maxMessageSize: number;
  /** "reject" (default): a bare CR or LF ends the transaction with an error. */
  bareLineEnds?: "reject" | "normalize";
}

/** Where we are within a line. "Real" line starts follow a CRLF the client actually sent. */
enum State {
  /** At a line start after a real CRLF (or the DATA command's CRLF): "." here may begin the terminator. */
  RealLineStart,
  /** At a line start after a normalized bare CR/LF: "." here can never begin the terminator. */
  SoftLineStart,
  /** Saw "." at a real line start. */
  RealDot,
  /** Saw "." at a soft line start. */
  SoftDot,
  /** Saw CRLF "." CR: LF completes the terminator. */
  RealDotCr,
  /** Saw "." CR at a soft line start. */
  SoftDotCr,
  /** Inside a line. */
  InLine,
  /** Saw CR inside a line (or on an empty line). */
  InLineCr,
}

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

export class DataReader {
  private state = State.RealLineStart;
  /** Bytes of the current line after unstuffing, excluding its CRLF. */
  private lineLength = 0;
  private stored = 0;
  private error: DataError | undefined;
  private finished = false;
  private readonly maxLineContent: number;
  private readonly maxMessageSize: number;
  private readonly normalize: boolean;
  // Output of the current push. Reject mode stores at most one byte per input byte plus
  // the 2 carried over ("." and CR); normalize mode at most 2 per input byte plus 4.
  private out: Buffer = Buffer.alloc(0);
  private outLength = 0;

  constructor(options: DataReaderOptions) {
    this.maxLineContent = (options.maxLineLength ?? 1000) - 2;
    this.maxMessageSize = options.maxMessageSize;
    this.normalize = options.bareLineEnds === "normalize";
  }

  /** Message bytes emitted so far (after unstuffing and normalization). */
  get bytesStored(): number {
    return this.stored;
  }

  get isDone(): boolean {
    return this.finished;
  }

  push(chunk: Buffer): DataPush {
    if (this.finished) throw new Error("DataReader: push after the end of data");
    this.out = Buffer.allocUnsafe((this.normalize ? 2 * chunk.length : chunk.length) + 4);
    this.outLength = 0;
    let nextCr = -1;
    let nextLf = -1;
    for (let i = 0; i < chunk.length; i++) {
      if (this.state === State.InLine && !this.error) {
        // Fast path: copy the plain text up to the next CR or LF in one go, within the
        // line and size limits; the byte-by-byte path below handles everything else.
        if (nextCr < i) nextCr = indexOrEnd(chunk, CR, i);
        if (nextLf < i) nextLf = indexOrEnd(chunk, LF, i);
        const run = Math.min(Math.min(nextCr, nextLf) - i, this.maxLineContent - this.lineLength, this.maxMessageSize - this.stored);
        if (run > 0) {
          chunk.copy(this.out, this.outLength, i, i + run);
          this.outLength += run;
          this.stored += run;
          this.lineLength += run;
          i += run;
          if (i === chunk.length) break;
        }
      }
      const verdict = this.step(chunk[i]!);
      if (verdict === "end") {
        this.finished = true;
        const result: DataPush = { data: this.takeOutput(), done: true };
        if (i + 1 < chunk.length) result.rest = chunk.subarray(i + 1);
        if (this.error) result.error = this.error;
        return result;
      }
      if (verdict === "bare") {
        // Reject mode: no terminator hunt; the caller answers 5.5.2 and closes.
        this.finished = true;
        this.error = "bare-line-end";
        return { data: this.takeOutput(), done: true, error: "bare-line-end" };
      }
    }
    return { data: this.takeOutput(), done: false };
  }

  /** Advances the state machine by one byte. */
  private step(b: number): "end" | "bare" | undefined {
    switch (this.state) {
      case State.RealLineStart:
      case State.SoftLineStart:
        this.lineLength = 0;
        if (b === DOT) {
          // Not counted: either it is the stuffed dot (dropped below) or the line is "." alone.
          this.state = this.state === State.RealLineStart ? State.RealDot : State.SoftDot;
          return undefined;
        }
        return this.inLine(b);
      case State.RealDot:
      case State.SoftDot:
        if (b === CR) {
          this.state = this.state === State.RealDot ? State.RealDotCr : State.SoftDotCr;
          return undefined;
        }
        if (b === LF) {
          if (!this.normalize) return "bare";
          // A lone "." ended by a bare LF is not the terminator; keep the dot as data.
          this.emit(DOT);
          this.emitCrlf(State.SoftLineStart);
          return undefined;
        }
        // §4.5.2: a leading dot followed by more characters was stuffed; drop it.
        return this.inLine(b);
      case State.RealDotCr:
        if (b === LF) return "end";
        return this.afterBareCrAfterDot(b);
      case State.SoftDotCr:
        if (b === LF) {
          this.emit(DOT);
          this.emitCrlf(State.RealLineStart);
          return undefined;
        }
        return this.afterBareCrAfterDot(b);
      case State.InLine:
        return this.inLine(b);
      case State.InLineCr:
        if (b === LF) {
          this.emitCrlf(State.RealLineStart);
          return undefined;
        }
        if (!this.normalize) return "bare";
        this.emitCrlf(State.SoftLineStart);
        return this.step(b);
    }
  }

  private inLine(b: number): "bare" | undefined {
    if (b === CR) {
      this.state = State.InLineCr;
      return undefined;
    }
    if (b === LF) {
      if (!this.normalize) return "bare";
      this.emitCrlf(State.SoftLineStart);
      return undefined;
    }
    this.state = State.InLine;
    this.countLineByte();
    this.emit(b);
    return undefined;
  }

  /** "." CR then something other than LF: the CR was bare. */
  private afterBareCrAfterDot(b: number): "end" | "bare" | undefined {
    if (!this.normalize) return "bare";
    this.emit(DOT);
    this.emitCrlf(State.SoftLineStart);
    return this.step(b);
  }

  private countLineByte(): void {
    this.lineLength++;
    if (this.lineLength > this.maxLineContent && !this.error) this.error = "line-too-long";
  }

  private emitCrlf(next: State): void {
    this.emit(CR);
    this.emit(LF);
    this.lineLength = 0;
    this.state = next;
  }

  /** Stores one byte unless an error already stopped storing. */
  private emit(b: number): void {
    if (this.error) return;
    if (this.stored >= this.maxMessageSize) {
      this.error = "too-big";
      return;
    }
    this.out[this.outLength++] = b;
    this.stored++;
  }

  private takeOutput(): Buffer[] {
    const data = this.outLength > 0 ? [this.out.subarray(0, this.outLength)] : [];
    this.out = Buffer.alloc(0);
    return data;
  }
}

function indexOrEnd(buf: Buffer, byte: number, from: number): number {
  const at = buf.indexOf(byte, from);
  return at < 0 ? buf.length : at;
}
