/**
 * The spooled message as a stream for delivery. A small message is read in one synchronous read:
 * it was usually written moments ago and sits in the page cache, and one read costs a few µs where
 * a file stream's open, reads and close each take a trip through libuv's thread pool (~35 µs of
 * CPU each here). Larger messages stream, so memory stays flat (DESIGN principle 4).
 */
import { createReadStream, readFileSync } from "node:fs";
import { Readable } from "node:stream";

/** Messages up to this size are read whole. */
export const WHOLE_READ_BYTES = 128 * 1024;

export function openMessage(path: string, size: number): Readable {
  if (size > WHOLE_READ_BYTES) return createReadStream(path);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    // As a file stream would: the error surfaces where the message is read.
    return new Readable({ read() { this.destroy(err as Error); } });
  }
  return Readable.from([bytes], { objectMode: false });
}
