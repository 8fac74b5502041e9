/**
 * ESMTP parameters of MAIL and RCPT (RFC 5321 §4.1.2 Mail-parameters), and
 * typed validators for the ones Postern understands (SECURITY rule 8):
 * SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), RET/ENVID/NOTIFY/ORCPT
 * (RFC 3461), AUTH (RFC 4954 §5), REQUIRETLS (RFC 8689). Anything else, or anything not advertised,
 * is refused with 555 5.5.4 (§4.1.1.11).
 */
import { argumentError, C555UnrecognisedParams, Se554InvalidArgs } from "../base/reply-codes.js";
import { reply, type Reply } from "./reply.js";
import { decodeXtext, hasControlChar } from "./xtext.js";

export interface EsmtpParam {
  /** Upper-cased; syntax-checked, so safe to echo in a reply. */
  keyword: string;
  value: string | null;
}

export interface MailParamsAllowed {
  size: boolean;
  eightBitMime: boolean;
  smtputf8: boolean;
  dsn: boolean;
  auth: boolean;
  /** REQUIRETLS was offered (RFC 8689 §2: over TLS only); absent: not offered. */
  requireTls?: boolean;
}

export interface MailParams {
  size?: number;
  body?: "7BIT" | "8BITMIME";
  smtputf8?: boolean;
  ret?: "FULL" | "HDRS";
  /** Decoded xtext. */
  envid?: string;
  /** Decoded xtext: an addr-spec or "<>" (RFC 4954 §5). Trust it only from an authenticated client. */
  auth?: string;
  /** RFC 8689 §4.1: the message must travel over verified TLS on every hop. */
  requireTls?: boolean;
}

export interface RcptParamsAllowed {
  dsn: boolean;
}

export type NotifyCondition = "NEVER" | "SUCCESS" | "FAILURE" | "DELAY";

export interface RcptParams {
  notify?: NotifyCondition[];
  /** addrType as written (compare case-insensitively); address is decoded xtext. */
  orcpt?: { addrType: string; address: string };
}

type Result<T> = { ok: true; value: T } | { ok: false; reply: Reply };

/** esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
const KEYWORD = /^[A-Za-z0-9][A-Za-z0-9-]*$/;
/** esmtp-value = 1*(%d33-60 / %d62-126), plus UTF8-non-ascii (RFC 6531 §3.3). */
const VALUE = /^(?:[\x21-\x3c\x3e-\x7e]|[^\x00-\x9f])+$/u;
const ENVID_MAX = 100; // RFC 3461 §4.4
const ORCPT_MAX = 500; // RFC 3461 §4.2
const ADDR_TYPE = /^[A-Za-z0-9!#$%&'*+\-/?^_`{|}~]+$/; // an atom (RFC 3461 §4.2)

const bad = (text: string): { ok: false; reply: Reply } => ({ ok: false, reply: argumentError(text) });
const unsupported = (keyword: string): { ok: false; reply: Reply } => ({
  ok: false,
  reply: reply(C555UnrecognisedParams, Se554InvalidArgs, `Unsupported parameter: ${keyword}`),
});

/** Splits "KEY=value KEY2" into parameters; separated by spaces. */
export function parseEsmtpParams(text: string): Result<EsmtpParam[]> {
  const params: EsmtpParam[] = [];
  for (const token of text.split(" ")) {
    if (token === "") continue; // tolerate runs of spaces
    const eq = token.indexOf("=");
    const keyword = eq < 0 ? token : token.slice(0, eq);
    const value = eq < 0 ? null : token.slice(eq + 1);
    if (!KEYWORD.test(keyword)) return bad("Bad parameter syntax");
    if (value !== null && !VALUE.test(value)) return bad(`Bad value for ${keyword.toUpperCase()}`);
    params.push({ keyword: keyword.toUpperCase(), value });
  }
  return { ok: true, value: params };
}

/** params: a list from parseEsmtpParams, or the parameter text as sent. */
export function parseMailParams(params: EsmtpParam[] | string, allowed: MailParamsAllowed): Result<MailParams> {
  if (typeof params === "string") {
    const list = parseEsmtpParams(params);
    return list.ok ? parseMailParams(list.value, allowed) : list;
  }
  const out: MailParams = {};
  const seen = new Set<string>();
  for (const { keyword, value } of params) {
    if (seen.has(keyword)) return bad(`Duplicate parameter: ${keyword}`);
    seen.add(keyword);
    switch (keyword) {
      case "SIZE": // RFC 1870 §6: size-value = 1*20DIGIT
        if (!allowed.size) return unsupported(keyword);
        if (value === null || !/^[0-9]{1,20}$/.test(value)) return bad("SIZE needs a number of octets");
        out.size = Number(value);
        break;
      case "BODY": {
        // RFC 6152 §2
        if (!allowed.eightBitMime) return unsupported(keyword);
        const body = value?.toUpperCase();
        if (body !== "7BIT" && body !== "8BITMIME") return bad("BODY must be 7BIT or 8BITMIME");
        out.body = body;
        break;
      }
      case "SMTPUTF8": // RFC 6531 §3.4: no value
        if (!allowed.smtputf8) return unsupported(keyword);
        if (value !== null) return bad("SMTPUTF8 takes no value");
        out.smtputf8 = true;
        break;
      case "RET": {
        // RFC 3461 §4.3
        if (!allowed.dsn) return unsupported(keyword);
        const ret = value?.toUpperCase();
        if (ret !== "FULL" && ret !== "HDRS") return bad("RET must be FULL or HDRS");
        out.ret = ret;
        break;
      }
      case "ENVID": {
        // RFC 3461 §4.4
        if (!allowed.dsn) return unsupported(keyword);
        if (value === null || value.length > ENVID_MAX) return bad("Bad ENVID value");
        const envid = decodeXtextParam(value);
        if (envid === null) return bad("Bad ENVID value");
        out.envid = envid;
        break;
      }
      case "AUTH": {
        // RFC 4954 §5
        if (!allowed.auth) return unsupported(keyword);
        const auth = value === null ? null : decodeXtextParam(value);
        if (auth === null || auth === "") return bad("Bad AUTH value");
        out.auth = auth;
        break;
      }
      case "REQUIRETLS": // RFC 8689 §2 item 4: no value
        if (!allowed.requireTls) return unsupported(keyword);
        if (value !== null) return bad("REQUIRETLS takes no value");
        out.requireTls = true;
        break;
      default:
        return unsupported(keyword);
    }
  }
  return { ok: true, value: out };
}

/** params: a list from parseEsmtpParams, or the parameter text as sent. */
export function parseRcptParams(params: EsmtpParam[] | string, allowed: RcptParamsAllowed): Result<RcptParams> {
  if (typeof params === "string") {
    const list = parseEsmtpParams(params);
    return list.ok ? parseRcptParams(list.value, allowed) : list;
  }
  const out: RcptParams = {};
  const seen = new Set<string>();
  for (const { keyword, value } of params) {
    if (seen.has(keyword)) return bad(`Duplicate parameter: ${keyword}`);
    seen.add(keyword);
    switch (keyword) {
      case "NOTIFY": {
        if (!allowed.dsn) return unsupported(keyword);
        const notify = parseNotify(value);
        if (notify === null) return bad("NOTIFY must be NEVER, or a list of SUCCESS, FAILURE, DELAY");
        out.notify = notify;
        break;
      }
      case "ORCPT": {
        // RFC 3461 §4.2: addr-type ";" xtext
        if (!allowed.dsn) return unsupported(keyword);
        const semi = value === null ? -1 : value.indexOf(";");
        if (value === null || semi < 0 || value.length > ORCPT_MAX) return bad("Bad ORCPT value");
        const addrType = value.slice(0, semi);
        const address = decodeXtextParam(value.slice(semi + 1));
        if (!ADDR_TYPE.test(addrType) || address === null || address === "") return bad("Bad ORCPT value");
        out.orcpt = { addrType, address };
        break;
      }
      default:
        return unsupported(keyword);
    }
  }
  return { ok: true, value: out };
}

/** RFC 3461 §4.1: "NEVER", or a comma list of SUCCESS, FAILURE, DELAY (each at most once). */
function parseNotify(value: string | null): NotifyCondition[] | null {
  if (value === null) return null;
  const items = value.toUpperCase().split(",");
  if (items.length === 1 && items[0] === "NEVER") return ["NEVER"];
  const conditions: NotifyCondition[] = [];
  for (const item of items) {
    if (item !== "SUCCESS" && item !== "FAILURE" && item !== "DELAY") return null;
    if (conditions.includes(item)) return null;
    conditions.push(item);
  }
  return conditions;
}

/** xtext that decodes cleanly and holds no control character (a decoded CR/LF could inject lines). */
function decodeXtextParam(value: string): string | null {
  const decoded = decodeXtext(value);
  return decoded === null || hasControlChar(decoded) ? null : decoded;
}
