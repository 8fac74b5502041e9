/**
 * CHUNKING (RFC 3030): "BDAT" SP chunk-size [SP "LAST"]. The chunk's octets follow the command
 * line directly and are binary: no dot-stuffing, no end marker; the server answers once it has
 * read exactly chunk-size octets (RFC 3030 §2, §4.2), even when it refuses the command.
 */
import { reply, type Reply } from "./reply.js";

/** Chunk sizes beyond this are refused before any byte is read (no 20-digit counters). */
export const MAX_CHUNK_DIGITS = 15;

export type BdatArgs = { ok: true; size: number; last: boolean } | { ok: false; reply: Reply };

export function parseBdatArgs(args: string[]): BdatArgs {
  const bad = { ok: false as const, reply: reply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]") };
  if (args.length < 1 || args.length > 2) return bad;
  if (!new RegExp(`^\\d{1,${MAX_CHUNK_DIGITS}}$`).test(args[0]!)) return bad;
  if (args.length === 2 && args[1]!.toUpperCase() !== "LAST") return bad;
  return { ok: true, size: Number(args[0]), last: args.length === 2 };
}

/** One BDAT command's progress: octets still to read, and the reply owed once they are in. */
export interface ChunkState {
  remaining: number;
  last: boolean;
  /** Set when the command is refused: its octets are read and dropped, then this is the reply. */
  refusal?: Reply;
}

/**
 * The text rules DATA applies, for chunked content (RFC 3030 without BINARYMIME still carries an
 * RFC 5322 message: lines end in CRLF, at most 998 octets of text, RFC 5321 §4.5.3.1.6). A bare
 * CR or LF is refused, or in "normalize" mode rewritten to CRLF, here, before the header checks
 * read the bytes: what the policy reads must be the bytes every next hop reads (SECURITY.md
 * rule 1; issue 11.1 — a bare CR once hid a From: line from the check and our outbound encoder
 * then turned it into a real line end). A CR at the end of one chunk may meet its LF in the next.
 */
export type ChunkTextError = "bare-line-end" | "line-too-long";

export interface ChunkTextOptions {
  /** Longest text line including CRLF. */
  maxLineLength: number;
  bareLineEnds: "reject" | "normalize";
}

export interface ChunkText {
  /** Bytes to store, every line ending in CRLF. */
  data: Buffer[];
  /** The first fault in byte order, whatever the chunk boundaries; it stops the reader. */
  error?: ChunkTextError;
}

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from("\r\n");

export class ChunkTextReader {
  private pendingCr = false;
  /** Octets of the current line, without its line end. */
  private lineLength = 0;
  private stopped = false;
  private readonly maxLineContent: number;
  private readonly normalize: boolean;

  constructor(options: ChunkTextOptions) {
    this.maxLineContent = options.maxLineLength - 2;
    this.normalize = options.bareLineEnds === "normalize";
  }

  push(chunk: Buffer): ChunkText {
    if (this.stopped) return { data: [] };
    const data: Buffer[] = [];
    let i = 0;
    if (this.pendingCr && chunk.length > 0) {
      this.pendingCr = false;
      if (chunk[0] === LF) i = 1;
      else if (!this.normalize) return this.fault(data, "bare-line-end");
      data.push(CRLF);
      this.lineLength = 0;
    }
    let runStart = i;
    let nextCr = -1;
    let nextLf = -1;
    while (i < chunk.length) {
      if (nextCr < i) nextCr = indexOrEnd(chunk, CR, i);
      if (nextLf < i) nextLf = indexOrEnd(chunk, LF, i);
      const stop = Math.min(nextCr, nextLf);
      this.lineLength += stop - i;
      // A line may also stay open to the end of the message: refused as soon as it is too long.
      if (this.lineLength > this.maxLineContent) return this.fault(data, "line-too-long");
      if (stop === chunk.length) break;
      if (chunk[stop] === CR && stop + 1 === chunk.length) {
        // Its LF may come with the next chunk.
        if (stop > runStart) data.push(chunk.subarray(runStart, stop));
        this.pendingCr = true;
        runStart = chunk.length;
        break;
      }
      if (chunk[stop] === CR && chunk[stop + 1] === LF) {
        this.lineLength = 0;
        i = stop + 2;
        continue;
      }
      // A bare CR or a bare LF.
      if (!this.normalize) return this.fault(data, "bare-line-end");
      if (stop > runStart) data.push(chunk.subarray(runStart, stop));
      data.push(CRLF);
      this.lineLength = 0;
      i = runStart = stop + 1;
    }
    if (chunk.length > runStart) data.push(chunk.subarray(runStart));
    return { data };
  }

  /**
   * The last chunk is in: a CR left pending was bare; an unterminated last line gets its CRLF
   * here, as DATA always stores one and as our outbound encoder would add one anyway — otherwise
   * a Maildir and a relay would read the last line differently.
   */
  end(): ChunkText {
    if (this.stopped) return { data: [] };
    const data: Buffer[] = [];
    if (this.pendingCr) {
      this.pendingCr = false;
      if (!this.normalize) return this.fault(data, "bare-line-end");
      data.push(CRLF);
    } else if (this.lineLength > 0) {
      data.push(CRLF);
    }
    this.lineLength = 0;
    this.stopped = true;
    return { data };
  }

  private fault(data: Buffer[], error: ChunkTextError): ChunkText {
    this.stopped = true;
    return { data, error };
  }
}

function indexOrEnd(buf: Buffer, byte: number, from: number): number {
  const at = buf.indexOf(byte, from);
  return at < 0 ? buf.length : at;
}
