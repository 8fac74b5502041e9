/**
 * SMTP replies on the wire. The Reply type, its builder and the named codes live in src/base
 * (reply.ts, reply-codes.ts) so policy can build replies without importing smtp/.
 */
import type { Reply } from "../base/reply.js";

export { reply, type Reply } from "../base/reply.js";

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
