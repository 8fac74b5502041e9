/**
 * Domain and address-literal syntax (RFC 5321 §4.1.2, §4.1.3), shared by the
 * path parser and EHLO/HELO. Syntax only: nothing is resolved (RFC 5321 §4.1.4).
 */
import { isIP } from "node:net";
import { domainToASCII, domainToUnicode } from "node:url";
import { normaliseDomain } from "../base/domain.js";

export interface ParsedDomain {
  /** Lower-cased, one trailing dot removed; U-labels kept as U-labels; literals as "[1.2.3.4]" / "[IPv6:...]". */
  domain: string;
  /** The same domain with U-labels converted to A-labels (equal to domain when ASCII). */
  ascii: string;
  isLiteral: boolean;
}

export interface DomainOptions {
  /** Accept U-labels (RFC 6531 §3.3); only when SMTPUTF8 applies. */
  allowUtf8: boolean;
  /** Accept "[IPv4]" and "[IPv6:...]" address literals. */
  allowLiteral: boolean;
}

const MAX_DOMAIN_OCTETS = 255; // §4.5.3.1.2
const MAX_LABEL_OCTETS = 63; // RFC 1035 §2.3.4
const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
const NON_ASCII = /[^\x00-\x7f]/;

/** Returns null when the text is neither a domain nor (if allowed) an address literal. */
export function parseDomain(text: string, opts: DomainOptions): ParsedDomain | null {
  if (text.startsWith("[")) {
    if (!opts.allowLiteral) return null;
    const literal = parseAddressLiteral(text);
    return literal === null ? null : { domain: literal, ascii: literal, isLiteral: true };
  }
  // One trailing dot (the DNS root) is tolerated and removed (SECURITY rule 7).
  const name = normaliseDomain(text);
  if (name.length === 0) return null;
  const hasNonAscii = NON_ASCII.test(name);
  if (hasNonAscii && !opts.allowUtf8) return null;
  const asciiLabels: string[] = [];
  for (const label of name.split(".")) {
    const ascii = NON_ASCII.test(label) ? uLabelToALabel(label) : label;
    if (ascii === null || ascii.length > MAX_LABEL_OCTETS || !LDH_LABEL.test(ascii)) return null;
    asciiLabels.push(ascii);
  }
  const ascii = asciiLabels.join(".");
  if (ascii.length > MAX_DOMAIN_OCTETS || Buffer.byteLength(name) > MAX_DOMAIN_OCTETS) return null;
  return { domain: name, ascii, isLiteral: false };
}

/**
 * Converts one U-label to its A-label, or null. The round trip must give the
 * label back unchanged, so IDNA mapping (full-width forms, ideographic full
 * stops, ignored characters such as U+00AD) cannot make two spellings of one
 * domain look different to policy.
 */
function uLabelToALabel(label: string): string | null {
  if (/[\x00-\x20\x7f-\x9f]/.test(label)) return null;
  const ascii = domainToASCII(label);
  if (ascii === "" || ascii.includes(".") || !ascii.startsWith("xn--")) return null;
  return domainToUnicode(ascii) === label ? ascii : null;
}

/**
 * "[1.2.3.4]" or "[IPv6:...]" (§4.1.3), normalised to lower case with the tag
 * spelled "IPv6:". General-address-literals and IPv6 zone ids are refused.
 */
function parseAddressLiteral(text: string): string | null {
  if (!text.endsWith("]")) return null;
  const inner = text.slice(1, -1);
  if (isIP(inner) === 4) return `[${inner}]`;
  if (inner.slice(0, 5).toLowerCase() !== "ipv6:") return null;
  const v6 = inner.slice(5);
  if (v6.includes("%") || isIP(v6) !== 6) return null;
  return `[IPv6:${v6.toLowerCase()}]`;
}
