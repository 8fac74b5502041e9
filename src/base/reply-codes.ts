/**
 * Reply codes by name, as mox's smtp package names them: the number stays in the name, so a
 * reader can grep for "553" and still see what it means. Basic codes: RFC 5321 §4.2.2–4.2.3
 * (521: RFC 7504; 530, 535: RFC 4954 §6). Enhanced codes: RFC 3463 §3, class included.
 * The builders below are the replies more than one module sends.
 */
import { reply, type Reply } from "./reply.js";

export const C221Closing = 221;
export const C250Ok = 250;
export const C421ServiceUnavail = 421;
export const C450MailboxUnavail = 450;
export const C451LocalError = 451;
export const C452StorageFull = 452;
export const C500SyntaxError = 500;
export const C501BadParamSyntax = 501;
export const C502CmdNotImpl = 502;
export const C503BadCmdSeq = 503;
export const C521NoMail = 521;
export const C530AuthRequired = 530;
export const C535AuthBadCreds = 535;
export const C550MailboxUnavail = 550;
export const C552MailboxFull = 552;
export const C553BadMailbox = 553;
export const C554TransactionFailed = 554;
export const C555UnrecognisedParams = 555;

export const Se200Ok = "2.0.0";
export const Se270Security = "2.7.0";
export const Se430MailSystem = "4.3.0";
export const Se431StorageFull = "4.3.1";
export const Se432NotAccepting = "4.3.2";
export const Se442BadConnection = "4.4.2";
export const Se453TooManyRcpts = "4.5.3";
export const Se470Security = "4.7.0";
export const Se471DeliveryUnauth = "4.7.1";
export const Se511BadDestMailbox = "5.1.1";
export const Se513BadDestSyntax = "5.1.3";
export const Se517BadSenderSyntax = "5.1.7";
export const Se534MsgTooBig = "5.3.4";
export const Se546RoutingLoop = "5.4.6";
export const Se551InvalidCmd = "5.5.1";
export const Se552SyntaxError = "5.5.2";
export const Se554InvalidArgs = "5.5.4";
export const Se560Content = "5.6.0";
export const Se567NonAsciiAddr = "5.6.7";
export const Se570Security = "5.7.0";
export const Se571DeliveryUnauth = "5.7.1";
/** RFC 7372 §3.2: SPF validation failed. */
export const Se5723SpfFail = "5.7.23";
export const Se578BadCreds = "5.7.8";
/** X.7.10 "Encryption needed" (RFC 5248 registry), for REQUIRETLS when TLS fails (RFC 8689 §4.2.1). */
export const Se5710EncryptionNeeded = "5.7.10";
/** RFC 8689 §7 (with 550): a REQUIRETLS message found no next hop that offers REQUIRETLS. */
export const Se5730RequireTlsSupport = "5.7.30";

/** 421: we close the connection after this reply (RFC 5321 §3.8); say why with `enhanced`. */
export function closingReply(enhanced: string, text: string): Reply {
  return reply(C421ServiceUnavail, enhanced, text);
}

/** X.7.1 "delivery not authorized, message refused" (RFC 3463 §3.8): a policy refusal. */
export function policyRefusal(code: typeof C550MailboxUnavail | typeof C553BadMailbox | typeof C554TransactionFailed, text: string): Reply {
  return reply(code, Se571DeliveryUnauth, text);
}

/** 450 4.7.1: a policy limit that lifts with time; the client tries again later. */
export function policyDeferral(text: string): Reply {
  return reply(C450MailboxUnavail, Se471DeliveryUnauth, text);
}

/** 451 4.3.0: our own failure (a lookup, a write); the client tries again later. */
export function localError(text: string): Reply {
  return reply(C451LocalError, Se430MailSystem, text);
}

/** 500 5.5.2: the command line does not parse. */
export function syntaxError(text: string): Reply {
  return reply(C500SyntaxError, Se552SyntaxError, text);
}

/** 501 5.5.4: the command is known, its arguments are not valid (RFC 3463 §3.6). */
export function argumentError(text: string): Reply {
  return reply(C501BadParamSyntax, Se554InvalidArgs, text);
}

/** 550 5.6.0: the message content is refused (RFC 3463 §3.7, "other or undefined media error"). */
export function contentRefusal(text: string): Reply {
  return reply(C550MailboxUnavail, Se560Content, text);
}
