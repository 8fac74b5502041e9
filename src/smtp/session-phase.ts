/**
 * Where an SMTP session stands, as one value that carries what that phase knows (after
 * OpenSMTPD's smtp_session.c state enum). Authentication and TLS are facts of the session that
 * survive phases; they are not here.
 *
 *   connected ─HELO/EHLO─► greeted ─MAIL─► mail ─DATA─► data ─CRLF.CRLF─► greeted
 *                          │     ▲          │
 *                        AUTH    │          BDAT─► chunk ─► bdat ─BDAT─► chunk ─► ... (LAST) ─► greeted
 *                          ▼     │
 *                          auth ─┘ (235, 535, cancelled)
 *
 * RSET and HELO/EHLO go back to greeted (or connected) from any command phase; STARTTLS to
 * connected; QUIT, a limit or a lost connection to closed.
 */
import type { Reply } from "./reply.js";
import type { DataReader } from "./data-reader.js";
import type { ChunkState } from "./bdat.js";
import type { ChunkedMessage } from "./chunked-message.js";
import type { MessageIntake, Transaction } from "./message-intake.js";
import { refusal, type RefusalKind } from "./refusals.js";

/** What HELO or EHLO told us. */
export interface Hello {
  /** The domain (or address literal) the client gave. */
  name: string;
  /** EHLO rather than HELO: the service extensions may be used. */
  esmtp: boolean;
}

export type Phase =
  /** No HELO/EHLO yet (or none since STARTTLS). */
  | { kind: "connected" }
  | { kind: "greeted"; hello: Hello }
  /** An AUTH exchange waits for the client's next response (RFC 4954 §4). */
  | { kind: "auth"; hello: Hello }
  /** MAIL accepted; RCPTs collect in tx. */
  | { kind: "mail"; hello: Hello; tx: Transaction }
  /** After DATA's 354: dot-stuffed bytes are read until CRLF.CRLF. */
  | { kind: "data"; hello: Hello; tx: Transaction; intake: MessageIntake; reader: DataReader }
  /** Between the chunks of a BDAT message (commands are read). */
  | { kind: "bdat"; hello: Hello; tx: Transaction; message: ChunkedMessage }
  /**
   * Reading a BDAT chunk's octets; then back to `resume`. A refused BDAT is read too (RFC 3030
   * §2), with `chunk.refusal` set and `resume` the phase it was refused in.
   */
  | { kind: "chunk"; chunk: ChunkState; resume: CommandPhase }
  | { kind: "closed" };

/** The phases in which the next line is a command. */
export type CommandPhase = Extract<Phase, { kind: "connected" | "greeted" | "mail" | "bdat" }>;

export const CONNECTED: Phase = { kind: "connected" };
export const CLOSED: Phase = { kind: "closed" };

export function helloOf(phase: Phase): Hello | null {
  switch (phase.kind) {
    case "connected":
    case "closed":
      return null;
    case "chunk":
      return helloOf(phase.resume);
    default:
      return phase.hello;
  }
}

/** The mail transaction under way (MAIL accepted, message not yet finished), if any. */
export function transactionOf(phase: Phase): Transaction | null {
  switch (phase.kind) {
    case "mail":
    case "data":
    case "bdat":
      return phase.tx;
    case "chunk":
      return transactionOf(phase.resume);
    default:
      return null;
  }
}

/** Back to greeted (or connected, before any HELO): the transaction, if any, is forgotten. */
export function greetedOrConnected(hello: Hello | null): CommandPhase {
  return hello ? { kind: "greeted", hello } : { kind: "connected" };
}

/** The verbs whose use depends on the phase; all others (EHLO, RSET, NOOP, QUIT...) run in every command phase. */
export type PhasedVerb = "STARTTLS" | "AUTH" | "MAIL" | "RCPT" | "DATA" | "BDAT";

/**
 * What each verb may do in each command phase: "ok", or the refusal it gets there. The session
 * checks a verb's own conditions (TLS, AUTH availability, recipients) around this table;
 * Session.command shows where (AUTH's TLS rule, say, answers before its transaction rule).
 */
export const VERB_PHASES: Record<PhasedVerb, Record<CommandPhase["kind"], "ok" | RefusalKind>> = {
  STARTTLS: { connected: "needEhlo", greeted: "ok", mail: "ok", bdat: "ok" },
  AUTH: { connected: "needEhlo", greeted: "ok", mail: "authInTransaction", bdat: "authInTransaction" },
  MAIL: { connected: "needHello", greeted: "ok", mail: "nestedMail", bdat: "nestedMail" },
  RCPT: { connected: "needMail", greeted: "needMail", mail: "ok", bdat: "ok" },
  DATA: { connected: "needMail", greeted: "needMail", mail: "ok", bdat: "dataAfterBdat" },
  BDAT: { connected: "needMail", greeted: "needMail", mail: "ok", bdat: "ok" },
};

/** The refusal a verb gets in this phase, or null when the phase allows it. */
export function phaseRefusal(verb: PhasedVerb, phase: CommandPhase): Reply | null {
  const rule = VERB_PHASES[verb][phase.kind];
  return rule === "ok" ? null : refusal(rule);
}
