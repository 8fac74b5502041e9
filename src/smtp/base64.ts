/**
 * Strict base64 for SASL exchanges (RFC 4954 §4). Node's own decoder skips
 * garbage silently, which is how lenient decoders get abused (SECURITY rule 10;
 * Exim CVE-2018-6789), so the text is checked before it is decoded.
 */

const BASE64_SHAPE = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Decodes canonical base64, or returns null. Refuses characters outside the
 * alphabet, whitespace, misplaced or excess padding, a length that is not a
 * multiple of 4, and non-zero bits in the final partial group (which decoders
 * ignore, so two different texts would decode to the same bytes).
 * Note: the RFC 4954 "=" (empty initial response) is not base64; handle it before calling.
 */
export function decodeBase64Strict(text: string): Buffer | null {
  if (text.length % 4 !== 0 || !BASE64_SHAPE.test(text)) return null;
  const decoded = Buffer.from(text, "base64");
  return decoded.toString("base64") === text ? decoded : null;
}

export function encodeBase64(buf: Buffer): string {
  return buf.toString("base64");
}
