/**
 * The Authentication-Results: header field (RFC 8601) we write. Fields arriving in our name are
 * removed as the header section is read (src/smtp/auth-results-field.ts, RFC 8601 §5). mailauth's own formatter is not used: it leaves "(" unescaped in comments, so a sender
 * address could open a comment that swallows the rest of the field for a strict parser.
 */

/** One method's result: `spf=pass (comment) smtp.mailfrom=a@b`. */
export interface MethodResult {
  method: "spf" | "dkim" | "dmarc" | "auth";
  result: string;
  comment?: string;
  /** ptype.property and value, e.g. ["header.d", "example.org"]. */
  props: [string, string][];
}

/** RFC 5322 comment text: no line breaks or controls, "(", ")" and "\" quoted. */
export function commentText(text: string): string {
  return text
    .replace(/[\x00-\x1f\x7f]+/g, " ")
    .replace(/\s+/g, " ")
    .trim()
    .replace(/[\\()]/g, (c) => `\\${c}`);
}

/** RFC 8601 §2.2 pvalue: a token as it is, anything else as a quoted-string. */
export function propValue(value: string): string {
  const v = value
    .replace(/[\x00-\x1f\x7f]+/g, " ")
    .replace(/\s+/g, " ")
    .trim();
  // An addr-spec or domain reads fine unquoted (RFC 8601 §2.3 allows "@" and "." in pvalue).
  if (v !== "" && /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.@]+$/.test(v) && !v.startsWith("@")) return v;
  return `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** The field, one method per folded line; `none` when there is nothing to say (RFC 8601 §2.2). */
export function formatAuthResults(authservId: string, results: readonly MethodResult[]): string {
  const parts = results.map((r) => {
    let text = `${r.method}=${r.result}`;
    if (r.comment) text += ` (${commentText(r.comment)})`;
    for (const [name, value] of r.props) text += ` ${name}=${propValue(value)}`;
    return text;
  });
  return `Authentication-Results: ${authservId};${parts.length === 0 ? " none" : `\r\n\t${parts.join(";\r\n\t")}`}`;
}
