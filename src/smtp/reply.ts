/**
 * SMTP replies. Every reply carries an enhanced status code (RFC 2034 / RFC 3463),
 * printed on each line of a multi-line reply (RFC 2034 §4).
 */
export interface Reply {
  code: number;
  /** Enhanced status code such as "5.7.1"; omitted only for the greeting and EHLO's first line. */
  enhanced?: string;
  lines: string[];
}

export function reply(code: number, enhanced: string | undefined, ...lines: string[]): Reply {
  return { code, enhanced, lines: lines.length > 0 ? lines : [""] };
}

/** Serialises a reply to wire format (CRLF line ends, "-" continuation). */
export function formatReply(r: Reply): string {
  const prefix = r.enhanced ? `${r.enhanced} ` : "";
  let out = "";
  r.lines.forEach((line, i) => {
    const sep = i < r.lines.length - 1 ? "-" : " ";
    out += `${r.code}${sep}${prefix}${line}\r\n`;
  });
  return out;
}

export function isPositive(r: Reply): boolean {
  return r.code >= 200 && r.code < 400;
}
