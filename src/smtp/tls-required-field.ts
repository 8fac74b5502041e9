/**
 * The TLS-Required: header field (RFC 8689 §3): "TLS-Required: No" asks that the recipient
 * domain's TLS policy (MTA-STS, DANE) be ignored, e.g. to report its broken certificate. Read from
 * the fields the intake checks read (headers.ts, DATA and BDAT alike); the field stays in the
 * message (§4.1: it MAY be relayed onward).
 */
import type { HeaderInfo } from "./headers.js";

/**
 * Whether the message is to be tagged "TLS-Required: No" (§4.1). `requireTls`: MAIL FROM carried
 * REQUIRETLS, and then the field MUST be ignored. The ABNF's "No" is case-insensitive (RFC 5234
 * §2.3) and allows only white space around it. More than one instance MUST NOT appear (§3): such a
 * message is not relaxed, since a lax reading would turn a malformed message into weaker delivery.
 */
export function taggedTlsRequiredNo(headers: Pick<HeaderInfo, "getAll">, requireTls: boolean): boolean {
  if (requireTls) return false;
  const values = headers.getAll("tls-required");
  return values.length === 1 && /^[ \t]*no[ \t]*$/i.test(values[0]!);
}
