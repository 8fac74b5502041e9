/**
 * Bench messages: unique per message (first body line), a constant filler to reach the size, and
 * the SHA-256 of the body as the sink must see it after every relay — relays add header fields,
 * none may touch the body. Lines stay short and never start with "." so no contender rewrites them.
 */
import { createHash } from "node:crypto";

const FILLER_LINE = "The quick brown fox jumps over the lazy dog, then files a benchmark report.\r\n";
const fillers = new Map<number, Buffer>();

function filler(bytes: number): Buffer {
  let f = fillers.get(bytes);
  if (!f) {
    const lines = Math.max(0, Math.floor(bytes / FILLER_LINE.length));
    f = Buffer.from(FILLER_LINE.repeat(lines), "latin1");
    fillers.set(bytes, f);
  }
  return f;
}

export interface BenchMessage {
  /** Header + body, CRLF line ends, without the terminating dot. */
  head: Buffer;
  body: Buffer[];
  size: number;
  bodyHash: string;
}

/** A message of about `size` bytes from `from` to `to`, unique by `tag`. */
export function benchMessage(tag: string, size: number, from: string, to: string, date: Date): BenchMessage {
  const head = Buffer.from(
    `From: <${from}>\r\nTo: <${to}>\r\nSubject: bench ${tag}\r\nDate: ${date.toUTCString().replace("GMT", "+0000")}\r\n` +
      `Message-ID: <${tag}@bench.invalid>\r\n\r\n`,
    "latin1",
  );
  const first = Buffer.from(`bench message ${tag}\r\n`, "latin1");
  const rest = filler(Math.max(0, size - head.length - first.length));
  const bodyHash = createHash("sha256").update(first).update(rest).digest("hex");
  return { head, body: [first, rest], size: head.length + first.length + rest.length, bodyHash };
}

/** The message as DATA bytes (no line starts with ".", so no stuffing needed) plus the terminator. */
export function dataBytes(m: BenchMessage): Buffer[] {
  return [m.head, ...m.body, Buffer.from(".\r\n", "latin1")];
}
