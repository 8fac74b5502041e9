/**
 * A spooled message file as a MessageSource. A small message is read in one synchronous read:
 * it was usually written moments ago and sits in the page cache, and one read costs a few µs where
 * a file stream's open, reads and close each take a trip through libuv's thread pool (~35 µs of
 * CPU each here). Larger messages stream, so memory stays flat (DESIGN principle 4).
 */
import { createReadStream, readFileSync, statSync } from "node:fs";
import { Readable } from "node:stream";
import type { MessageSource } from "./types.js";

/** Messages up to this size are read whole. */
export const WHOLE_READ_BYTES = 128 * 1024;

/**
 * `size`: the file's size when known (the envelope records it); unknown, the file is streamed.
 * `prefix`: bytes yielded before the file's (header lines prepended after the file was written).
 */
export function fileMessage(path: string, size?: number, prefix?: Buffer): MessageSource {
  const head = prefix && prefix.length > 0 ? prefix : undefined;
  return {
    get size() {
      let fileSize = size;
      if (fileSize === undefined) {
        try {
          fileSize = statSync(path).size;
        } catch {
          fileSize = 0; // the error surfaces where the message is read
        }
      }
      return (head?.length ?? 0) + fileSize;
    },
    open: () => openMessageFile(path, size, head),
  };
}

function openMessageFile(path: string, size: number | undefined, head: Buffer | undefined): Readable {
  if (size === undefined || size > WHOLE_READ_BYTES) {
    if (!head) return createReadStream(path);
    return Readable.from(
      (async function* () {
        const file = createReadStream(path);
        // Open the file first, so a missing one fails before any byte is yielded.
        await new Promise<void>((ok, fail) => file.once("open", () => ok()).once("error", fail));
        yield head;
        yield* file as AsyncIterable<Buffer>;
      })(),
      { objectMode: false },
    );
  }
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    // As a file stream would: the error surfaces where the message is read.
    return new Readable({
      read() {
        this.destroy(err as Error);
      },
    });
  }
  return Readable.from([head ? Buffer.concat([head, bytes]) : bytes], { objectMode: false });
}
