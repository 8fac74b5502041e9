/**
 * Trace fields we add on top of a message: the Received: header (RFC 5321 §4.4) and RFC 5322 dates.
 * Only validated tokens go in (SECURITY.md rule 19): the HELO name passed the EHLO/HELO syntax
 * check, the IP comes from the socket.
 */

export interface ReceivedFacts {
  heloName: string;
  clientIp: string;
  hostname: string;
  /** RFC 3848: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA. */
  protocol: string;
  queueId?: string;
  tls?: { version: string; cipher: string };
  /** Named only when the message has one recipient (others stay private, as Postfix does). */
  recipient?: string;
  date: Date;
}

export function buildReceivedHeader(f: ReceivedFacts): string {
  const ip = f.clientIp.includes(":") ? `IPv6:${f.clientIp}` : f.clientIp;
  let h = `Received: from ${f.heloName} ([${ip}])\r\n\tby ${f.hostname} (Postern) with ${f.protocol}`;
  if (f.queueId) h += ` id ${f.queueId}`;
  if (f.tls) h += `\r\n\t(using ${f.tls.version} with cipher ${f.tls.cipher})`;
  if (f.recipient) h += `\r\n\tfor <${f.recipient}>`;
  return `${h};\r\n\t${rfc5322Date(f.date)}\r\n`;
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** RFC 5322 §3.3 date-time in UTC: "Wed, 25 Nov 2026 16:54:51 +0000". */
export function rfc5322Date(d: Date): string {
  const two = (n: number) => String(n).padStart(2, "0");
  return (
    `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000`
  );
}
