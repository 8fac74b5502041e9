/**
 * The text of a delivery status notification (RFC 3464): a multipart/report (RFC 6522) with a
 * human-readable part, a message/delivery-status part, and the returned message — its header
 * section (text/rfc822-headers, RET=HDRS, the default) or the whole (message/rfc822, RET=FULL,
 * RFC 3461 §4.3). Pure functions: the caller streams the returned message between `head` and `tail`.
 */
import { randomBytes } from "node:crypto";
import type { Envelope, EnvelopeRecipient } from "./types.js";

/** RFC 3464 §2.3.3: what happened to one recipient. */
export type DsnAction = "failed" | "delayed" | "delivered" | "relayed";

export interface DsnRecipient {
  rcpt: EnvelopeRecipient;
  action: DsnAction;
}

export interface DsnInput {
  /** Our host name: Reporting-MTA and the From: address. */
  reportingMta: string;
  /** Queue id of the report itself (its Message-ID). */
  reportId: string;
  env: Envelope;
  recipients: DsnRecipient[];
  /** Whole message (message/rfc822) or its header section only (text/rfc822-headers). */
  returnFull: boolean;
  now: Date;
  /** For delayed recipients: when we give up (Will-Retry-Until). */
  retryUntil?: Date;
}

export interface DsnText {
  /** Everything before the returned message (ends with the third part's headers and blank line). */
  head: string;
  /** CRLF and the closing boundary after the returned message. */
  tail: string;
  /** True when any part holds 8-bit text (then the report goes out with BODY=8BITMIME). */
  eightBit: boolean;
}

const CRLF = "\r\n";

/** RFC 5322 §3.3 date-time in UTC, e.g. "Fri, 01 Mar 2024 12:00:00 +0000". */
export function rfc5322Date(d: Date): string {
  const days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const p = (n: number) => String(n).padStart(2, "0");
  return `${days[d.getUTCDay()]}, ${p(d.getUTCDate())} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

/** Control characters (CR, LF above all) never reach a header line; long text is cut short. */
function oneLine(text: string, max = 900): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\x00-\x1f\x7f]+/g, " ").trim();
  return clean.length > max ? clean.slice(0, max) + "..." : clean;
}

/** The SMTP reply inside a result such as "smarthost h:25: 550 5.1.1 no such user". */
export function smtpReplyIn(detail: string | undefined): { code: number; status?: string; text: string } | undefined {
  if (!detail) return undefined;
  // A reply with an enhanced code anywhere (after a prefix such as "smarthost h:25: "), or a bare one at the start.
  const m = /(?:^|[\s:])([245]\d\d)[ -]([245]\.\d{1,3}\.\d{1,3})(?:\s.*)?$/.exec(detail) ?? /^([245]\d\d)(?:[ -].*)?$/.exec(detail);
  if (!m) return undefined;
  return { code: Number(m[1]), status: m[2], text: oneLine(detail.slice(m.index).trim()) };
}

/** RFC 3464 §2.3.4 Status: the enhanced code of the reply, else one implied by the action. */
export function statusFor(rcpt: EnvelopeRecipient, action: DsnAction): string {
  const reply = smtpReplyIn(rcpt.lastResult);
  if (action === "delivered" || action === "relayed") return reply?.status?.startsWith("2") ? reply.status : "2.0.0";
  if (reply?.status && reply.status[0] !== "2") return reply.status;
  if (/expired/.test(rcpt.lastResult ?? "")) return "4.4.7"; // RFC 3463: delivery time expired
  if (reply) return reply.code >= 500 ? "5.0.0" : "4.0.0";
  return action === "failed" ? "5.0.0" : "4.0.0";
}

/** RFC 6533 §3: "utf-8" address type for non-ASCII addresses, else "rfc822". */
function typedAddress(address: string): string {
  return `${/^[\x20-\x7e]*$/.test(address) ? "rfc822" : "utf-8"}; ${oneLine(address)}`;
}

function subjectFor(actions: Set<DsnAction>): string {
  if (actions.has("failed")) return "Undelivered Mail Returned to Sender";
  if (actions.has("delayed")) return "Delayed Mail (still being retried)";
  return "Successful Mail Delivery Report";
}

function humanText(input: DsnInput): string {
  const { env, recipients, reportingMta } = input;
  const lines = [`This is the mail system at host ${reportingMta}.`, ""];
  const byAction = (a: DsnAction) => recipients.filter((r) => r.action === a);
  const listing = (rs: DsnRecipient[]) => rs.flatMap((r) => [`<${oneLine(r.rcpt.address)}>: ${oneLine(r.rcpt.lastResult ?? "no details")}`]);
  if (byAction("failed").length > 0) {
    lines.push("Your message could not be delivered to the recipients below. This is a permanent", "error; the message has been given up on.", "");
    lines.push(...listing(byAction("failed")), "");
  }
  if (byAction("delayed").length > 0) {
    lines.push("Your message has not been delivered yet to the recipients below. The mail system", "will keep trying; you do not need to send it again.");
    if (input.retryUntil) lines.push(`Delivery will be attempted until ${rfc5322Date(input.retryUntil)}.`);
    lines.push("", ...listing(byAction("delayed")), "");
  }
  const done = recipients.filter((r) => r.action === "delivered" || r.action === "relayed");
  if (done.length > 0) {
    lines.push("Your message was delivered to the recipients below (as you asked with NOTIFY=SUCCESS).", "");
    lines.push(...done.map((r) => `<${oneLine(r.rcpt.address)}>: ${r.action}`), "");
  }
  lines.push(`Queue id: ${env.id}`);
  return lines.join(CRLF) + CRLF;
}

/** RFC 3464 §2.2 per-message fields, then §2.3 per-recipient groups, each group after a blank line. */
function deliveryStatus(input: DsnInput): string {
  const { env } = input;
  const groups: string[][] = [];
  const perMessage = [`Reporting-MTA: dns; ${input.reportingMta}`];
  // RFC 3461 §4.4 ENVID: kept decoded; the parser refused CR/LF, oneLine() makes sure.
  if (env.envid !== undefined) perMessage.push(`Original-Envelope-Id: ${oneLine(env.envid)}`);
  perMessage.push(`X-Postern-Queue-ID: ${env.id}`, `Arrival-Date: ${rfc5322Date(new Date(env.receivedAt))}`);
  groups.push(perMessage);
  for (const { rcpt, action } of input.recipients) {
    const g: string[] = [];
    // RFC 3464 §2.3.1: Original-Recipient only from ORCPT.
    if (rcpt.orcpt) g.push(`Original-Recipient: ${oneLine(rcpt.orcpt.addrType)}; ${oneLine(rcpt.orcpt.address)}`);
    g.push(`Final-Recipient: ${typedAddress(rcpt.address)}`, `Action: ${action}`, `Status: ${statusFor(rcpt, action)}`);
    if (rcpt.remoteMta) g.push(`Remote-MTA: dns; ${oneLine(rcpt.remoteMta)}`);
    const reply = smtpReplyIn(rcpt.lastResult);
    if (reply && action !== "delivered") g.push(`Diagnostic-Code: smtp; ${reply.text}`);
    else if (rcpt.lastResult && action !== "delivered") g.push(`X-Postern-Diagnostic: ${oneLine(rcpt.lastResult)}`);
    if (rcpt.attempts > 0) g.push(`Last-Attempt-Date: ${rfc5322Date(input.now)}`);
    if (action === "delayed" && input.retryUntil) g.push(`Will-Retry-Until: ${rfc5322Date(input.retryUntil)}`);
    groups.push(g);
  }
  return groups.map((g) => g.join(CRLF) + CRLF).join(CRLF);
}

const isAscii = (s: string) => /^[\x00-\x7f]*$/.test(s);

export function buildDsn(input: DsnInput): DsnText {
  const boundary = `=_postern_${randomBytes(16).toString("hex")}`;
  const actions = new Set(input.recipients.map((r) => r.action));
  const human = humanText(input);
  const status = deliveryStatus(input);
  const returned8bit = input.env.body === "8BITMIME" || input.env.smtputf8 === true;
  const eightBit = returned8bit || !isAscii(human) || !isAscii(status);
  const cte = (text: string) => (isAscii(text) ? "7bit" : "8bit");
  const headers = [
    `From: Mail Delivery System <MAILER-DAEMON@${input.reportingMta}>`,
    `To: <${oneLine(input.env.mailFrom)}>`,
    `Subject: ${subjectFor(actions)}`,
    `Date: ${rfc5322Date(input.now)}`,
    `Message-ID: <${input.reportId}@${input.reportingMta}>`,
    // RFC 3834 §5: a machine's answer, so vacation responders and the like stay quiet.
    "Auto-Submitted: auto-replied",
    // RFC 8689 §4.3, §6: a report about a message that did not require TLS says so too.
    ...(input.env.tlsRequiredNo && !input.env.requireTls ? ["TLS-Required: No"] : []),
    "MIME-Version: 1.0",
    `Content-Type: multipart/report; report-type=delivery-status;${CRLF}\tboundary="${boundary}"`,
    `Content-Transfer-Encoding: ${eightBit ? "8bit" : "7bit"}`,
  ];
  const third = input.returnFull
    ? ["Content-Type: message/rfc822", `Content-Transfer-Encoding: ${returned8bit ? "8bit" : "7bit"}`]
    : ["Content-Type: text/rfc822-headers", `Content-Transfer-Encoding: ${returned8bit ? "8bit" : "7bit"}`];
  const head = [
    headers.join(CRLF),
    "",
    "This is a MIME-encapsulated delivery status notification (RFC 3464).",
    "",
    `--${boundary}`,
    "Content-Type: text/plain; charset=utf-8",
    `Content-Transfer-Encoding: ${cte(human)}`,
    "",
    human,
    `--${boundary}`,
    "Content-Type: message/delivery-status",
    `Content-Transfer-Encoding: ${cte(status)}`,
    "",
    status,
    `--${boundary}`,
    ...third,
    "",
    "",
  ].join(CRLF);
  return { head, tail: `${CRLF}--${boundary}--${CRLF}`, eightBit };
}
