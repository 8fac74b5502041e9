/**
 * xtext (RFC 3461 §4): the encoding of ENVID, ORCPT and the MAIL AUTH= value.
 *   xtext = *( xchar / hexchar )
 *   xchar = "!".."~" except "+" and "="
 *   hexchar = "+" 2(DIGIT / "A".."F")
 */

const HEX_PAIR = /^[0-9A-F]{2}$/;
const utf8Fatal = new TextDecoder("utf-8", { fatal: true });

/**
 * Decodes xtext; null if malformed (a character outside xchar, "+" not followed
 * by two upper-case hex digits, or decoded octets that are not UTF-8).
 * Decoded control characters are returned as they are: callers decide.
 */
export function decodeXtext(text: string): string | null {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2b /* + */) {
      const hex = text.slice(i + 1, i + 3);
      if (!HEX_PAIR.test(hex)) return null;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (c >= 0x21 && c <= 0x7e && c !== 0x3d /* = */) {
      bytes.push(c);
    } else {
      return null;
    }
  }
  try {
    return utf8Fatal.decode(Uint8Array.from(bytes));
  } catch {
    return null;
  }
}

/** Encodes text (as UTF-8 octets) to xtext. */
export function encodeXtext(text: string): string {
  let out = "";
  for (const b of Buffer.from(text, "utf8")) {
    out += b >= 0x21 && b <= 0x7e && b !== 0x2b && b !== 0x3d ? String.fromCharCode(b) : "+" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** True if the text holds a C0 control character (CR, LF, NUL, ...) or DEL. */
export function hasControlChar(text: string): boolean {
  return /[\x00-\x1f\x7f]/.test(text);
}
