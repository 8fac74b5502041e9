/**
 * Turns one command line (without its CRLF) into a typed command (RFC 5321 §4.1.1).
 * Pure syntax: what a command means in the current state is the session's business.
 * Every refusal is a ready Reply; nothing the client sent is echoed in it
 * except already-validated tokens (SECURITY rule 19).
 */
import {
  argumentError,
  C221Closing,
  C500SyntaxError,
  C501BadParamSyntax,
  Se270Security,
  Se551InvalidCmd,
  Se552SyntaxError,
  syntaxError as syntaxErrorReply,
} from "../base/reply-codes.js";
import { reply, type Reply } from "./reply.js";
import { parsePath, findPathEnd, addressReply, type PathRole } from "./address.js";
import { parseDomain } from "./domain.js";
import { parseEsmtpParams } from "./esmtp-params.js";
import { parseBdatArgs } from "./bdat.js";

export type ParsedCommand =
  | { kind: "EHLO" | "HELO"; domain: string; isLiteral: boolean }
  /**
   * path: the path as sent, "<" ... ">" included, already known to be well-formed
   * with UTF-8 allowed; the session parses it again with parsePath() and the real
   * SMTPUTF8 setting, which only it knows (RFC 6531 §3.4). params: the parameter
   * text as sent (syntax checked), for parseMailParams / parseRcptParams.
   */
  | { kind: "MAIL" | "RCPT"; path: string; params: string }
  | { kind: "DATA" | "RSET" | "QUIT" | "STARTTLS" }
  | { kind: "NOOP" }
  | { kind: "AUTH"; mechanism: string; initialResponse?: string }
  | { kind: "VRFY" | "EXPN"; arg: string }
  | { kind: "HELP"; arg?: string }
  /** RFC 3030 CHUNKING: the chunk's octets follow the line. */
  | { kind: "BDAT"; size: number; last: boolean }
  /** An HTTP request or header line (cross-protocol attack, or DATA sent before 354): close. */
  | { kind: "HTTP"; reply: Reply }
  /** The verb is not one we implement. */
  | { kind: "UNKNOWN"; verb: string; reply: Reply }
  | { kind: "error"; reply: Reply };

const SP = 0x20;
const utf8Fatal = new TextDecoder("utf-8", { fatal: true });

/** HTTP methods, and lines shaped like header fields ("Host: x"), never start SMTP commands. */
const HTTP_METHODS = new Set(["GET", "POST", "PUT", "HEAD", "CONNECT", "OPTIONS", "DELETE", "PATCH", "TRACE"]);
const HEADER_LIKE = /^[A-Za-z][A-Za-z0-9-]*:/;

const syntaxError = (text = "Syntax error"): ParsedCommand => ({ kind: "error", reply: syntaxErrorReply(text) });
const argError = (text: string): ParsedCommand => ({ kind: "error", reply: argumentError(text) });
/** MAIL/RCPT not in their "KEYWORD:<path>" shape: the arguments' syntax is wrong (501 5.5.2). */
const usageError = (usage: string): ParsedCommand => ({ kind: "error", reply: reply(C501BadParamSyntax, Se552SyntaxError, usage) });

export function parseCommand(line: Buffer): ParsedCommand {
  // Trailing spaces are harmless and common; drop them before anything else.
  let end = line.length;
  while (end > 0 && line[end - 1] === SP) end--;
  const bytes = line.subarray(0, end);
  if (bytes.length === 0) return syntaxError("Empty command");

  const firstSpace = bytes.indexOf(SP);
  const verb = bytes.toString("latin1", 0, firstSpace < 0 ? bytes.length : firstSpace).toUpperCase();
  if (HTTP_METHODS.has(verb) || HEADER_LIKE.test(bytes.toString("latin1", 0, Math.min(bytes.length, 80)))) {
    // SECURITY rule 5 (Postfix smtpd_forbidden_commands): answer and close.
    return { kind: "HTTP", reply: reply(C221Closing, Se270Security, "This is an SMTP server, closing connection") };
  }
  for (const b of bytes) {
    if (b < 0x20 || b === 0x7f) return syntaxError("Control characters not allowed");
  }
  const isMailOrRcpt = verb === "MAIL" || verb === "RCPT";
  let text: string;
  if (bytes.some((b) => b >= 0x80)) {
    // Only MAIL/RCPT may carry UTF-8 (RFC 6531 paths and parameter values).
    if (!isMailOrRcpt) return syntaxError("Non-ASCII characters not allowed");
    try {
      text = utf8Fatal.decode(bytes);
    } catch {
      return syntaxError("Invalid UTF-8");
    }
  } else {
    text = bytes.toString("latin1");
  }
  const space = text.indexOf(" ");
  const arg = space < 0 ? "" : text.slice(space + 1);
  const args = arg.split(" ").filter((a) => a !== "");

  switch (verb) {
    case "EHLO":
    case "HELO": {
      // §4.1.1.1: EHLO takes a domain or an address literal (accepted with HELO too).
      if (args.length !== 1) return argError(`Syntax: ${verb} hostname`);
      const parsed = parseDomain(args[0]!, { allowUtf8: false, allowLiteral: true });
      if (parsed === null) return argError("Invalid domain name or address literal");
      return { kind: verb, domain: parsed.domain, isLiteral: parsed.isLiteral };
    }
    case "MAIL":
      return parseMailOrRcpt("MAIL", "FROM:", arg);
    case "RCPT":
      return parseMailOrRcpt("RCPT", "TO:", arg);
    case "DATA":
    case "RSET":
    case "QUIT":
    case "STARTTLS":
      if (args.length > 0) return argError(`${verb} takes no arguments`);
      return { kind: verb };
    case "NOOP": // §4.1.1.9: the argument, if any, is ignored
      return { kind: "NOOP" };
    case "AUTH":
      return parseAuth(args);
    case "VRFY":
    case "EXPN":
      if (args.length === 0) return argError(`Syntax: ${verb} address`);
      return { kind: verb, arg };
    case "HELP":
      return args.length > 0 ? { kind: "HELP", arg } : { kind: "HELP" };
    case "BDAT": {
      const parsed = parseBdatArgs(args);
      return parsed.ok ? { kind: "BDAT", size: parsed.size, last: parsed.last } : { kind: "error", reply: parsed.reply };
    }
    default:
      return { kind: "UNKNOWN", verb, reply: reply(C500SyntaxError, Se551InvalidCmd, "Command unrecognized") };
  }
}

/**
 * "MAIL FROM:" Reverse-path [SP Mail-parameters] / "RCPT TO:" Forward-path [SP Rcpt-parameters]
 * (§4.1.1.2, §4.1.1.3). One space after the colon is tolerated, as Postfix does.
 * Syntax is checked here (path with UTF-8 allowed, parameter list); the
 * session re-parses both with what it knows (SMTPUTF8, advertised extensions).
 */
function parseMailOrRcpt(kind: "MAIL" | "RCPT", keyword: "FROM:" | "TO:", arg: string): ParsedCommand {
  const usage = `Syntax: ${kind} ${keyword}<address>`;
  if (arg.slice(0, keyword.length).toUpperCase() !== keyword) return usageError(usage);
  let rest = arg.slice(keyword.length);
  if (rest.startsWith(" ")) rest = rest.slice(1);
  const role: PathRole = kind === "MAIL" ? "sender" : "recipient";
  if (!rest.startsWith("<")) return usageError(usage);
  const pathEnd = findPathEnd(rest, 0);
  if (pathEnd < 0) {
    // No ">" outside quotes: either an unbalanced quote in the address or no ">" at all.
    return rest.includes('"')
      ? { kind: "error", reply: addressReply(role, role === "sender" ? "Bad sender address syntax" : "Bad recipient address syntax") }
      : usageError(usage);
  }
  const after = rest.slice(pathEnd + 1);
  if (after !== "" && !after.startsWith(" ")) return usageError(usage);
  const pathText = rest.slice(0, pathEnd + 1);
  const path = parsePath(pathText, { allowNull: kind === "MAIL", allowUtf8: true, role });
  if (!path.ok) return { kind: "error", reply: path.reply };
  const params = parseEsmtpParams(after);
  if (!params.ok) return { kind: "error", reply: params.reply };
  return { kind, path: pathText, params: after.trim() };
}

/** RFC 4954 §4: "AUTH" SP sasl-mech [SP initial-response]; sasl-mech = 1*20 of A-Z 0-9 - _ (RFC 4422 §3.1). */
function parseAuth(args: string[]): ParsedCommand {
  if (args.length < 1 || args.length > 2) return argError("Syntax: AUTH mechanism [initial-response]");
  const mechanism = args[0]!.toUpperCase();
  if (!/^[A-Z0-9_-]{1,20}$/.test(mechanism)) return argError("Invalid mechanism name");
  return args.length === 2 ? { kind: "AUTH", mechanism, initialResponse: args[1]! } : { kind: "AUTH", mechanism };
}
