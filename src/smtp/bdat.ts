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
