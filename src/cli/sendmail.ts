/**
 * `postern sendmail` (also run when invoked as `sendmail`): the local injector cron, PHP's mail()
 * and scripts expect. The message comes on stdin; it goes to the running server over the local
 * submission socket (src/server/local-submit.ts) — no network, no credentials, and no
 * unauthenticated relay opened for local programs. Exit codes follow sysexits(3), as sendmail's do.
 */
import { connect } from "node:net";
import { userInfo } from "node:os";
import { loadConfigFile } from "../config/load.js";
import { LOCAL_SUBMIT_DEFAULT_CONFIG, localSubmitSocketPath, type LocalSubmitRequest, type LocalSubmitResponse } from "../server/local-submit-protocol.js";

const EX = { ok: 0, usage: 64, dataErr: 65, noUser: 67, unavailable: 69, software: 70, tempFail: 75 } as const;

export interface SendmailOptions {
  t?: boolean;
  f?: string;
  F?: string;
  i?: boolean;
  config?: string;
  socket?: string;
}

/** Normalises line ends to CRLF and, without -i, ends the message at a line holding only ".". */
export function prepareMessage(input: Buffer, ignoreDots: boolean): Buffer {
  const lines = input.toString("latin1").split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const kept: string[] = [];
  for (const line of lines) {
    if (!ignoreDots && line === ".") break;
    kept.push(line.replace(/\r/g, ""));
  }
  return Buffer.from(kept.map((l) => l + "\r\n").join(""), "latin1");
}

/** -t: addresses from To:, Cc: and Bcc:, and the header section without Bcc: (RFC 5322 §3.6.3). */
export function extractRecipients(message: Buffer): { recipients: string[]; message: Buffer } {
  const text = message.toString("latin1");
  const end = text.indexOf("\r\n\r\n");
  const head = end < 0 ? text : text.slice(0, end + 2);
  const rest = end < 0 ? "" : text.slice(end + 2);
  const fields: string[] = [];
  for (const line of head.split("\r\n")) {
    if (line === "") continue;
    if (/^[ \t]/.test(line) && fields.length > 0) fields[fields.length - 1] += "\r\n" + line;
    else fields.push(line);
  }
  const recipients: string[] = [];
  const kept: string[] = [];
  for (const f of fields) {
    const m = /^(to|cc|bcc)\s*:(.*)$/is.exec(f);
    if (m) recipients.push(...addressesIn(m[2]!));
    if (!/^bcc\s*:/i.test(f)) kept.push(f);
  }
  return { recipients, message: Buffer.from(kept.map((f) => f + "\r\n").join("") + rest, "latin1") };
}

/** The addr-specs of an address list: "<a@b>" forms, or bare words with an @; groups and comments skipped. */
export function addressesIn(list: string): string[] {
  const cleaned = list.replace(/\r\n/g, " ").replace(/\([^()]*\)/g, " ").replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const out: string[] = [];
  for (const part of cleaned.split(/[,;]/)) {
    const angle = /<([^<>]*)>/.exec(part);
    const addr = (angle ? angle[1]! : part.replace(/^[^:]*:/, "")).trim();
    if (addr) out.push(addr);
  }
  return out;
}

function readStdin(): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    process.stdin.on("data", (c: Buffer) => chunks.push(c));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks)));
    process.stdin.on("error", reject);
  });
}

export function submit(socketPath: string, request: LocalSubmitRequest, message: Buffer): Promise<LocalSubmitResponse> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let answer = "";
    sock.on("connect", () => {
      sock.write(JSON.stringify(request) + "\n");
      sock.end(message);
    });
    sock.on("data", (d: Buffer) => (answer += d.toString("utf8")));
    sock.on("error", reject);
    sock.on("close", () => {
      try {
        resolve(JSON.parse(answer.trim()) as LocalSubmitResponse);
      } catch {
        reject(new Error(`no answer from the local submission socket ${socketPath}`));
      }
    });
  });
}

export async function sendmailCommand(args: string[], o: SendmailOptions): Promise<void> {
  const fail = (code: number, text: string) => {
    process.stderr.write(`sendmail: ${text}\n`);
    process.exitCode = code;
  };
  const socketPath = o.socket ?? process.env.POSTERN_SENDMAIL_SOCKET ?? localSubmitSocketPath(loadConfigFile(o.config ?? LOCAL_SUBMIT_DEFAULT_CONFIG));
  if (!socketPath) return fail(EX.unavailable, "local submission is not configured (localSubmit.socket)");
  let message = prepareMessage(await readStdin(), o.i === true);
  let recipients = [...args];
  if (o.t) {
    const extracted = extractRecipients(message);
    message = extracted.message;
    recipients = [...recipients, ...extracted.recipients];
  }
  if (recipients.length === 0) return fail(EX.usage, "no recipients (give them as arguments, or use -t)");
  const request: LocalSubmitRequest = { version: 1, user: userInfo().username, uid: process.getuid?.() ?? -1, recipients };
  if (o.f !== undefined) request.sender = o.f;
  if (o.F !== undefined) request.fullName = o.F;
  let answer: LocalSubmitResponse;
  try {
    answer = await submit(socketPath, request, message);
  } catch (err) {
    return fail(EX.tempFail, `cannot reach the mail server: ${(err as Error).message}`);
  }
  if (!answer.ok) return fail(answer.temporary ? EX.tempFail : answer.badAddress ? EX.noUser : EX.dataErr, answer.error);
  process.exitCode = EX.ok;
}
