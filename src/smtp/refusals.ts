/**
 * The session's own refusals by name, so code says which refusal it means instead of comparing
 * reply numbers. Policy refusals (relay, sender, limits) come from src/policy with their reasons.
 */
import { reply, type Reply } from "./reply.js";
import {
  C452StorageFull,
  C502CmdNotImpl,
  C503BadCmdSeq,
  C530AuthRequired,
  C552MailboxFull,
  C554TransactionFailed,
  Se453TooManyRcpts,
  Se534MsgTooBig,
  Se551InvalidCmd,
  Se570Security,
} from "../base/reply-codes.js";

interface RefusalSpec {
  code: number;
  enhanced: string;
  text: string;
}

const spec = (code: number, enhanced: string, text: string): RefusalSpec => ({ code, enhanced, text });

export const REFUSALS = {
  // Sequence (RFC 5321 §4.1.4, §3.3): 503 bad sequence of commands.
  needHello: spec(C503BadCmdSeq, Se551InvalidCmd, "Error: send HELO/EHLO first"),
  needEhlo: spec(C503BadCmdSeq, Se551InvalidCmd, "Error: send EHLO first"),
  nestedMail: spec(C503BadCmdSeq, Se551InvalidCmd, "Error: nested MAIL command"),
  needMail: spec(C503BadCmdSeq, Se551InvalidCmd, "Error: need MAIL command"),
  needRcpt: spec(C503BadCmdSeq, Se551InvalidCmd, "Error: need RCPT command"),
  noValidRecipients: spec(C554TransactionFailed, Se551InvalidCmd, "Error: no valid recipients"),
  // RFC 3030 §3: BDAT and DATA do not mix in one transaction.
  dataAfterBdat: spec(C503BadCmdSeq, Se551InvalidCmd, "Error: DATA not allowed after BDAT"),
  // RFC 4954 §4
  authInTransaction: spec(C503BadCmdSeq, Se551InvalidCmd, "Error: AUTH not permitted during a mail transaction"),
  alreadyAuthenticated: spec(C503BadCmdSeq, Se551InvalidCmd, "Error: already authenticated"),
  authNotHere: spec(C503BadCmdSeq, Se551InvalidCmd, "Error: AUTH not available here; use port 587 (STARTTLS) or 465"),
  // RFC 3207 §4, RFC 6409 §4.3
  startTlsFirst: spec(C530AuthRequired, Se570Security, "Must issue a STARTTLS command first"),
  authRequired: spec(C530AuthRequired, Se570Security, "Authentication required"),
  tlsActive: spec(C554TransactionFailed, Se551InvalidCmd, "Error: TLS already active"),
  tlsUnavailable: spec(C502CmdNotImpl, Se551InvalidCmd, "Error: STARTTLS not available"),
  // RFC 5321 §4.5.3.1.10: flow control, not an error (src/smtp/error-budget.ts).
  tooManyRecipients: spec(C452StorageFull, Se453TooManyRcpts, "Error: too many recipients"),
  // RFC 1870 §6.2
  sizeExceeded: spec(C552MailboxFull, Se534MsgTooBig, "Message size exceeds fixed maximum message size"),
} as const;

export type RefusalKind = keyof typeof REFUSALS;

/** A fresh reply for the named refusal. */
export function refusal(kind: RefusalKind): Reply {
  const s = REFUSALS[kind];
  return reply(s.code, s.enhanced, s.text);
}
