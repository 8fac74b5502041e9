/**
 * The one strict RFC 5321 path parser (SECURITY rules 6 and 7).
 *
 *   Path       = "<" [ A-d-l ":" ] Mailbox ">"          (§4.1.2)
 *   Mailbox    = Local-part "@" ( Domain / address-literal )
 *   Local-part = Dot-string / Quoted-string
 *
 * Addresses stay data: the result is validated text, never a route, a file
 * name or a command. "%" and "!" are ordinary local-part characters here.
 */
import { C501BadParamSyntax, C553BadMailbox, Se513BadDestSyntax, Se517BadSenderSyntax, Se567NonAsciiAddr } from "../base/reply-codes.js";
import { reply, type Reply } from "./reply.js";
import { parseDomain } from "./domain.js";

export { parseDomain, type ParsedDomain, type DomainOptions } from "./domain.js";
export { decodeXtext, encodeXtext } from "./xtext.js";
export {
  parseEsmtpParams,
  parseMailParams,
  parseRcptParams,
  type EsmtpParam,
  type MailParams,
  type RcptParams,
  type MailParamsAllowed,
  type RcptParamsAllowed,
} from "./esmtp-params.js";

export interface MailPath {
  /** "" for the null path; otherwise localPart "@" domain. */
  address: string;
  /** Canonical: quotes removed when the content is a valid Dot-string (§4.1.2); case kept (§2.4). */
  localPart: string;
  /** Lower-cased, one trailing dot removed. "" for the null path and for bare <Postmaster>. */
  domain: string;
  /** domain with U-labels as A-labels, for comparisons with configured (ASCII) domains. */
  domainAscii: string;
  isNull: boolean;
  /** A source route was given and stripped to the final hop (§4.1.2, Appendix C; SECURITY rule 7). */
  sourceRoute: boolean;
  domainIsLiteral: boolean;
  /** RCPT TO:<Postmaster> without a domain (§4.1.1.3): the caller must treat it as local. */
  barePostmaster: boolean;
  /** Holds non-ASCII characters: only valid when SMTPUTF8 is in effect (RFC 6531). */
  utf8: boolean;
}

export type PathRole = "sender" | "recipient";

export interface PathOptions {
  /** Accept "<>" (MAIL FROM only). */
  allowNull: boolean;
  /** Accept UTF-8 local parts and U-label domains (RFC 6531 §3.3). */
  allowUtf8: boolean;
  /** Chooses the enhanced code of refusals: 5.1.7 for the sender, 5.1.3 (default) for a recipient. */
  role?: PathRole;
}

export type PathResult = { ok: true; path: MailPath } | { ok: false; reply: Reply };

const MAX_PATH_OCTETS = 256; // §4.5.3.1.3, including "<" and ">"
const MAX_LOCAL_PART_OCTETS = 64; // §4.5.3.1.1
const NON_ASCII = /[^\x00-\x7f]/;
/** atext (RFC 5322 §3.2.3); with SMTPUTF8 also non-ASCII (RFC 6531 §3.3), but never C1 controls. */
const ATOM_ASCII = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+$/;
const ATOM_UTF8 = /^(?:[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]|[^\x00-\x9f])+$/u;

export function parsePath(text: string, opts: PathOptions): PathResult {
  const role = opts.role ?? "recipient";
  const fail = (why: string): PathResult => ({ ok: false, reply: addressReply(role, why) });

  if (Buffer.byteLength(text) > MAX_PATH_OCTETS) return fail("Address too long");
  if (!text.startsWith("<") || !text.endsWith(">") || text.length < 2) return fail(syntaxText(role));
  if (/[\x00-\x1f\x7f]/.test(text)) return fail(syntaxText(role));
  if (!opts.allowUtf8 && NON_ASCII.test(text)) {
    // RFC 6531 §3.6: a non-ASCII address without SMTPUTF8 gets 553 5.6.7.
    const withUtf8 = parsePath(text, { ...opts, allowUtf8: true });
    if (withUtf8.ok) return { ok: false, reply: reply(C553BadMailbox, Se567NonAsciiAddr, "Non-ASCII address requires SMTPUTF8") };
    return withUtf8;
  }

  let inner = text.slice(1, -1);
  if (inner === "") {
    if (!opts.allowNull) return fail("Null address not allowed here");
    return { ok: true, path: nullPath() };
  }

  // Source route: "@a,@b:" before the mailbox. Validated, then dropped (§4.1.2, Appendix C).
  let sourceRoute = false;
  if (inner.startsWith("@")) {
    const colon = inner.indexOf(":");
    if (colon < 0) return fail(syntaxText(role));
    for (const hop of inner.slice(0, colon).split(",")) {
      if (!hop.startsWith("@")) return fail(syntaxText(role));
      if (!parseDomain(hop.slice(1), { allowUtf8: opts.allowUtf8, allowLiteral: false })) {
        return fail(syntaxText(role));
      }
    }
    inner = inner.slice(colon + 1);
    sourceRoute = true;
  }

  const split = splitMailbox(inner);
  if (split === null) return fail(syntaxText(role));
  const { rawLocal, rawDomain } = split;

  const localPart = canonicalLocalPart(rawLocal, opts.allowUtf8);
  if (localPart === null) return fail(syntaxText(role));
  if (Buffer.byteLength(rawLocal) > MAX_LOCAL_PART_OCTETS) return fail("Local part too long");

  if (rawDomain === null) {
    // §4.1.1.3: "RCPT TO:<Postmaster>" must be accepted without a domain.
    if (role === "recipient" && !sourceRoute && localPart.toLowerCase() === "postmaster") {
      return {
        ok: true,
        path: {
          address: localPart,
          localPart,
          domain: "",
          domainAscii: "",
          isNull: false,
          sourceRoute: false,
          domainIsLiteral: false,
          barePostmaster: true,
          utf8: false,
        },
      };
    }
    return fail(syntaxText(role));
  }

  const domain = parseDomain(rawDomain, { allowUtf8: opts.allowUtf8, allowLiteral: true });
  if (domain === null) return fail(syntaxText(role));
  const address = `${localPart}@${domain.domain}`;
  return {
    ok: true,
    path: {
      address,
      localPart,
      domain: domain.domain,
      domainAscii: domain.ascii,
      isNull: false,
      sourceRoute,
      domainIsLiteral: domain.isLiteral,
      barePostmaster: false,
      utf8: NON_ASCII.test(address),
    },
  };
}

/**
 * Finds the ">" closing a path that starts at text[start] === "<", skipping
 * quoted strings and their quoted-pairs. Returns its index, or -1.
 */
export function findPathEnd(text: string, start: number): number {
  let inQuotes = false;
  for (let i = start + 1; i < text.length; i++) {
    const c = text[i];
    if (inQuotes) {
      if (c === "\\") i++;
      else if (c === '"') inQuotes = false;
    } else if (c === '"') {
      inQuotes = true;
    } else if (c === ">") {
      return i;
    }
  }
  return -1;
}

export function addressReply(role: PathRole, text: string): Reply {
  return reply(C501BadParamSyntax, role === "sender" ? Se517BadSenderSyntax : Se513BadDestSyntax, text);
}

function syntaxText(role: PathRole): string {
  return role === "sender" ? "Bad sender address syntax" : "Bad recipient address syntax";
}

function nullPath(): MailPath {
  return {
    address: "",
    localPart: "",
    domain: "",
    domainAscii: "",
    isNull: true,
    sourceRoute: false,
    domainIsLiteral: false,
    barePostmaster: false,
    utf8: false,
  };
}

/**
 * Splits a mailbox into its local part and domain at the "@" that follows the
 * local part (a quoted local part may not hide one: see canonicalLocalPart).
 * rawDomain is null when there is no "@" at all.
 */
function splitMailbox(mailbox: string): { rawLocal: string; rawDomain: string | null } | null {
  let localEnd: number;
  if (mailbox.startsWith('"')) {
    localEnd = -1;
    for (let i = 1; i < mailbox.length; i++) {
      if (mailbox[i] === "\\") i++;
      else if (mailbox[i] === '"') {
        localEnd = i + 1;
        break;
      }
    }
    if (localEnd < 0) return null; // unbalanced quote
  } else {
    localEnd = mailbox.indexOf("@");
    if (localEnd < 0) localEnd = mailbox.length;
  }
  if (localEnd === mailbox.length) return { rawLocal: mailbox, rawDomain: null };
  if (mailbox[localEnd] !== "@") return null;
  // A second "@" ends up in the domain, which then fails domain syntax.
  return { rawLocal: mailbox.slice(0, localEnd), rawDomain: mailbox.slice(localEnd + 1) };
}

/**
 * Validates a Dot-string or Quoted-string local part (§4.1.2) and returns its
 * canonical spelling, or null. Refused: empty local parts, "@" inside quotes
 * (SECURITY rule 7), unbalanced quotes, control characters, comments.
 */
function canonicalLocalPart(raw: string, allowUtf8: boolean): string | null {
  if (!raw.startsWith('"')) return isDotString(raw, allowUtf8) ? raw : null;
  let content = "";
  for (let i = 1; i < raw.length - 1; i++) {
    let c = raw[i]!;
    if (c === '"') return null;
    if (c === "\\") {
      // quoted-pairSMTP = "\" %d32-126 (RFC 6531 does not extend it).
      c = raw[++i] ?? "";
      if (i >= raw.length - 1 || c < " " || c > "~") return null;
    } else if (!isQtext(c, allowUtf8)) {
      return null;
    }
    content += c;
  }
  if (raw.length < 2 || !raw.endsWith('"') || content === "" || content.includes("@")) return null;
  if (isDotString(content, allowUtf8)) return content;
  return `"${content.replace(/[\\"]/g, (m) => `\\${m}`)}"`;
}

function isDotString(text: string, allowUtf8: boolean): boolean {
  const atom = allowUtf8 ? ATOM_UTF8 : ATOM_ASCII;
  return text.split(".").every((part) => atom.test(part));
}

/** qtextSMTP = %d32-33 / %d35-91 / %d93-126 (§4.1.2), plus non-ASCII with SMTPUTF8 (RFC 6531 §3.3). */
function isQtext(c: string, allowUtf8: boolean): boolean {
  const code = c.codePointAt(0)!;
  if (code >= 32 && code <= 126) return c !== '"' && c !== "\\";
  return allowUtf8 && code > 0x9f;
}
