/**
 * `postern sendmail` (also run when invoked as `sendmail`): the local injector cron, PHP's mail()
 * and scripts expect. The message comes on stdin; it goes to the running server over the local
 * submission socket (src/server/local-submit.ts) — no network, no credentials, and no
 * unauthenticated relay opened for local programs. Exit codes follow sysexits(3), as sendmail's do.
 */
import { execFileSync } from "node:child_process";
import { statSync } from "node:fs";
import { connect } from "node:net";
import { userInfo } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { parseDocument } from "yaml";
import { ConfigError, readConfigText } from "../config/load.js";
import type { LocalSubmitRequest, LocalSubmitResponse } from "../server/local-submit-protocol.js";
import { configPathOf } from "./config-source.js";

const EX = { ok: 0, usage: 64, dataErr: 65, noUser: 67, unavailable: 69, software: 70, tempFail: 75, noPerm: 77, config: 78 } as const;

/** Environment variables naming the socket (the second is the older name). */
const SOCKET_ENV = ["POSTERN_SOCKET", "POSTERN_SENDMAIL_SOCKET"] as const;

class SendmailFailure extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The socket path, from --socket, $POSTERN_SOCKET, or the config's `localSubmit.socket` — and
 * nothing else from that file: the rest is neither validated nor kept (it can hold the smarthost
 * password, and the config may rightly be unreadable to the users who send mail).
 */
export function resolveSocket(o: { socket?: string; config?: string }, env: NodeJS.ProcessEnv = process.env): string {
  if (o.socket) return o.socket;
  for (const name of SOCKET_ENV) if (env[name]) return env[name]!;
  const { path } = configPathOf(o.config, env);
  const hint = "give the socket with --socket PATH or $POSTERN_SOCKET";
  let text: string;
  try {
    text = readConfigText(path);
  } catch (err) {
    const code = err instanceof ConfigError ? err.code : undefined;
    if (code === "ENOENT") throw new SendmailFailure(EX.unavailable, `local submission is not configured: ${path} does not exist; ${hint}`);
    throw new SendmailFailure(EX.config, `cannot read ${path}${code === "EACCES" ? " (it may hold secrets and be private to the server)" : ""}; ${hint}`);
  }
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0) throw new SendmailFailure(EX.config, `${path} is not valid YAML; ${hint}`);
  const socket = doc.getIn(["localSubmit", "socket"]);
  const dataDir = doc.getIn(["dataDir"]) ?? "./data";
  if (socket === undefined || socket === null)
    throw new SendmailFailure(EX.unavailable, `local submission is not configured (no localSubmit.socket in ${path})`);
  if (typeof socket !== "string" || typeof dataDir !== "string")
    throw new SendmailFailure(EX.config, `${path}: localSubmit.socket and dataDir must be strings`);
  // As the server resolves it: dataDir against the config's folder, a relative socket inside dataDir.
  return isAbsolute(socket) ? socket : join(resolve(dirname(resolve(path)), dataDir), socket);
}

/** "permission denied" on the socket: name the group that may use it. */
function permissionHint(socketPath: string): string {
  try {
    const st = statSync(socketPath);
    let group = String(st.gid);
    try {
      group = execFileSync("getent", ["group", String(st.gid)], { encoding: "utf8" }).split(":")[0] || group;
    } catch {
      // no name for that gid: show the number
    }
    const mode = (st.mode & 0o777).toString(8).padStart(4, "0");
    return `permission denied on ${socketPath} (group ${group}, mode ${mode}): add the user ${userInfo().username} to group ${group}`;
  } catch {
    return `permission denied on ${socketPath} or a folder above it: the user ${userInfo().username} may not reach it (add it to the socket's group, usually postdrop)`;
  }
}

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
  const cleaned = list
    .replace(/\r\n/g, " ")
    .replace(/\([^()]*\)/g, " ")
    .replace(/"(?:[^"\\]|\\.)*"/g, '""');
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
  let socketPath: string;
  try {
    socketPath = resolveSocket(o);
  } catch (err) {
    if (err instanceof SendmailFailure) return fail(err.code, err.message);
    throw err;
  }
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
    if ((err as NodeJS.ErrnoException).code === "EACCES") return fail(EX.noPerm, permissionHint(socketPath));
    return fail(EX.tempFail, `cannot reach the mail server: ${(err as Error).message}`);
  }
  if (!answer.ok) return fail(answer.temporary ? EX.tempFail : answer.badAddress ? EX.noUser : EX.dataErr, answer.error);
  process.exitCode = EX.ok;
}
