/**
 * The "chunk" phase (RFC 3030): the octets of one BDAT chunk, exactly as many as announced,
 * binary, then one reply. These functions say what the octets do and where the session goes
 * next; the session applies it (src/smtp/session.ts).
 */
import { reply, type Reply } from "./reply.js";
import type { MessageIntake } from "./message-intake.js";
import type { CommandPhase, Phase } from "./session-phase.js";
import type { InfoWarnLog } from "../base/log.js";

export type ChunkPhase = Extract<Phase, { kind: "chunk" }>;

/** Where a complete chunk leaves the session, and what it answers. */
export type ChunkEnd =
  | { kind: "reply"; next: CommandPhase; reply: Reply }
  /** The message is over: commit it, or refuse it for `error`. */
  | { kind: "finish"; next: CommandPhase; intake: MessageIntake; error?: "bare-line-end" };

/** After some octets: the chunk's end, or "more" while its octets are still to come. */
export type ChunkOutcome = { kind: "more" } | ChunkEnd;

/**
 * At most `remaining` octets of the chunk. A bare line end ends the message at once (SECURITY.md
 * rule 1, as in DATA: 521 5.5.2 and close); the rest of the chunk is never read (the connection
 * ends), so nothing after it can be taken as a command.
 */
export async function takeChunkOctets(phase: ChunkPhase, bytes: Buffer, log: InfoWarnLog): Promise<ChunkOutcome> {
  const { chunk, resume } = phase;
  chunk.remaining -= bytes.length;
  // The octets of a refused BDAT (no message) are read and dropped.
  const message = resume.kind === "bdat" ? resume.message : null;
  if (resume.kind === "bdat" && !chunk.refusal && resume.message.taking && resume.message.push(bytes) === "bare-line-end") {
    return bareLineEnd(resume);
  }
  if (chunk.remaining > 0) {
    if (message) await message.intake.written(); // back-pressure, as in DATA
    return { kind: "more" };
  }
  return endChunk(phase, log);
}

/** The message ends here, refused with 521 and the connection closed by the intake's answer. */
function bareLineEnd(resume: Extract<Phase, { kind: "bdat" }>): ChunkEnd {
  return { kind: "finish", next: { kind: "greeted", hello: resume.hello }, intake: resume.message.intake, error: "bare-line-end" };
}

/** All the chunk's octets are in (or it had none): its reply, and the phase after it. */
export function endChunk(phase: ChunkPhase, log: InfoWarnLog): ChunkEnd {
  const { chunk, resume } = phase;
  if (chunk.refusal) return { kind: "reply", next: resume, reply: chunk.refusal };
  if (resume.kind !== "bdat") throw new Error(`an accepted chunk outside the bdat phase (${resume.kind})`);
  const { message, hello, tx } = resume;
  const greeted: CommandPhase = { kind: "greeted", hello };
  if (chunk.last && message.taking && message.end() === "bare-line-end") return bareLineEnd(resume);
  if (message.failed) {
    // Too big or a line too long: the transaction is over; the client sends RSET or starts
    // again (RFC 3030 §4.2). DATA answers the same after its dot.
    log.info({ event: "data-refused", from: tx.sender.address, reason: message.failed.reason }, "message refused");
    void message.intake.abort();
    return { kind: "reply", next: greeted, reply: message.failed.reply };
  }
  if (!chunk.last) return { kind: "reply", next: resume, reply: reply(250, "2.0.0", "Ok: chunk received") };
  return { kind: "finish", next: greeted, intake: message.intake };
}
