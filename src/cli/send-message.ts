/**
 * The test message `postern send` composes: RFC 5322 headers, a text body, and attachments as
 * multipart/mixed (RFC 2046 §5.1) with base64 parts. Every line ends in CRLF; header values from
 * the command line are refused if they hold a line break (header injection).
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { rfc5322Date } from "../smtp/trace.js";

export interface ComposeOptions {
  from: string;
  to: string[];
  subject?: string;
  /** Extra "Name: value" header lines; a same-named default header is replaced. */
  headers?: string[];
  body: string;
  attachments?: string[];
  hostname: string;
  date?: Date;
}

const TYPES: Record<string, string> = {
  txt: "text/plain",
  html: "text/html",
  pdf: "application/pdf",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  zip: "application/zip",
  json: "application/json",
  csv: "text/csv",
};

function contentTypeOf(file: string): string {
  const ext = /\.([A-Za-z0-9]+)$/.exec(file)?.[1]?.toLowerCase() ?? "";
  return TYPES[ext] ?? "application/octet-stream";
}

function crlf(text: string): string {
  return text.replace(/\r?\n|\r/g, "\r\n");
}

function headerLine(line: string): { name: string; line: string } {
  if (/[\r\n]/.test(line)) throw new Error(`header contains a line break: ${JSON.stringify(line)}`);
  const m = /^([\x21-\x39\x3b-\x7e]+):[ \t]*(.*)$/.exec(line);
  if (!m) throw new Error(`not a header line ("Name: value"): ${JSON.stringify(line)}`);
  return { name: m[1]!.toLowerCase(), line: `${m[1]}: ${m[2]}` };
}

/** RFC 2047 encoded-word for a non-ASCII file name or subject. */
function encodeWord(text: string): string {
  return /^[\x20-\x7e]*$/.test(text) ? text : `=?UTF-8?B?${Buffer.from(text).toString("base64")}?=`;
}

function base64Lines(data: Buffer): string {
  return (data.toString("base64").match(/.{1,76}/g) ?? []).join("\r\n") + "\r\n";
}

export function composeMessage(o: ComposeOptions): Buffer {
  const date = o.date ?? new Date();
  const defaults: [string, string][] = [
    ["date", `Date: ${rfc5322Date(date)}`],
    ["from", `From: <${o.from}>`],
    ["to", `To: ${o.to.map((a) => `<${a}>`).join(", ")}`],
    ["subject", `Subject: ${encodeWord(o.subject ?? `postern send test ${rfc5322Date(date)}`)}`],
    ["message-id", `Message-ID: <${Date.now().toString(36)}.${randomBytes(6).toString("hex")}@${o.hostname}>`],
    ["mime-version", "MIME-Version: 1.0"],
  ];
  const extra = (o.headers ?? []).map(headerLine);
  const replaced = new Set(extra.map((h) => h.name));
  const head = [...defaults.filter(([n]) => !replaced.has(n)).map(([, l]) => l), ...extra.map((h) => h.line)];
  const body = crlf(o.body.endsWith("\n") ? o.body : o.body + "\n");
  const eightBit = /[^\x00-\x7f]/.test(body);
  const textType = `Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: ${eightBit ? "8bit" : "7bit"}\r\n`;
  if (!o.attachments || o.attachments.length === 0) {
    return Buffer.from(head.join("\r\n") + "\r\n" + textType + "\r\n" + body);
  }
  const boundary = `=_postern_${randomBytes(12).toString("hex")}`;
  let out = head.join("\r\n") + `\r\nContent-Type: multipart/mixed; boundary="${boundary}"\r\n\r\n`;
  out += "This is a multi-part message in MIME format.\r\n";
  out += `--${boundary}\r\n${textType}\r\n${body}`;
  for (const file of o.attachments) {
    const name = encodeWord(basename(file)).replace(/["\\]/g, "_");
    out +=
      `--${boundary}\r\nContent-Type: ${contentTypeOf(file)}; name="${name}"\r\n` +
      `Content-Disposition: attachment; filename="${name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n` +
      base64Lines(readFileSync(file));
  }
  return Buffer.from(out + `--${boundary}--\r\n`);
}
