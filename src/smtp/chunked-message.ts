/**
 * One message arriving in BDAT chunks (RFC 3030), from its first chunk to its LAST one. The
 * chunks' octets go through the same text rules as DATA (line ends, line length) and the same
 * size limit on their way to the intake (SECURITY.md rule 1).
 */
import type { Reply } from "./reply.js";
import { ChunkTextReader } from "./bdat.js";
import { dataErrorRefusal, type MessageIntake } from "./message-intake.js";

export class ChunkedMessage {
  /** Too big or a line too long: the rest is read and dropped, the chunk answered with this. */
  failed?: { reply: Reply; reason: string };
  private readonly reader: ChunkTextReader;

  constructor(
    readonly intake: MessageIntake,
    private readonly limits: { textLineLength: number; messageSize: number },
    bareLineEnds: "reject" | "normalize",
  ) {
    this.reader = new ChunkTextReader({ maxLineLength: limits.textLineLength, bareLineEnds });
  }

  /** Octets are still worth storing: neither failed here nor refused by the intake's checks. */
  get taking(): boolean {
    return !this.failed && !this.intake.refused;
  }

  /** Part of a chunk; "bare-line-end" ends the message (and the connection) at once. */
  push(bytes: Buffer): "bare-line-end" | null {
    const text = this.reader.push(bytes);
    if (text.error === "bare-line-end") return "bare-line-end";
    this.take(text.data, text.error);
    return null;
  }

  /** The LAST chunk is in: the pending CR or the unterminated last line is settled. */
  end(): "bare-line-end" | null {
    const tail = this.reader.end();
    if (tail.error === "bare-line-end") return "bare-line-end";
    this.take(tail.data, tail.error);
    return null;
  }

  /** Stores normalised chunk text unless the message already failed, or fails it now. */
  private take(data: Buffer[], error?: "line-too-long"): void {
    if (this.failed) return;
    if (error) {
      this.failed = dataErrorRefusal(error);
      return;
    }
    const size = data.reduce((n, b) => n + b.length, 0);
    if (this.intake.size + size > this.limits.messageSize) {
      this.failed = dataErrorRefusal("too-big");
      return;
    }
    for (const piece of data) this.intake.add(piece);
  }
}
