/**
 * SMTP replies. Every reply carries an enhanced status code (RFC 2034 / RFC 3463),
 * printed on each line of a multi-line reply (RFC 2034 §4). Formatting is in src/smtp/reply.ts.
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
