/**
 * Reads a delivery status notification with a standard parser (mailparser): the report's MIME
 * structure, and each field group of the message/delivery-status part parsed as a header block.
 */
import assert from "node:assert/strict";
import { simpleParser, type Attachment, type ParsedMail } from "mailparser";

export interface ParsedDsn {
  mail: ParsedMail;
  /** Per-message fields (Reporting-MTA, Original-Envelope-Id, Arrival-Date), lower-case keys. */
  perMessage: Map<string, string>;
  /** One map per recipient group (Final-Recipient, Action, Status, Diagnostic-Code...). */
  recipients: Map<string, string>[];
  /** The third part: text/rfc822-headers or message/rfc822. */
  returned: Attachment;
}

async function fieldsOf(block: string): Promise<Map<string, string>> {
  const parsed = await simpleParser(block.trim() + "\r\n\r\n");
  const out = new Map<string, string>();
  for (const line of parsed.headerLines) out.set(line.key, line.line.slice(line.line.indexOf(":") + 1).trim());
  return out;
}

export async function readDsn(raw: Buffer | string): Promise<ParsedDsn> {
  const mail = await simpleParser(raw, { keepDeliveryStatus: true });
  const ct = mail.headers.get("content-type") as { value: string; params: Record<string, string> };
  assert.equal(ct.value, "multipart/report");
  assert.equal(ct.params["report-type"], "delivery-status");
  const status = mail.attachments.find((a) => a.contentType === "message/delivery-status");
  assert.ok(status, "a message/delivery-status part");
  const groups = status.content
    .toString("utf8")
    .split(/\r?\n\r?\n/)
    .filter((g) => g.trim() !== "");
  const [first, ...rest] = await Promise.all(groups.map(fieldsOf));
  const returned = mail.attachments.find((a) => a.contentType === "text/rfc822-headers" || a.contentType === "message/rfc822");
  assert.ok(returned, "the returned message or headers");
  return { mail, perMessage: first!, recipients: rest, returned };
}
