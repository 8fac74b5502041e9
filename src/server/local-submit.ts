/**
 * The server side of `postern sendmail`: a unix socket (never TCP) whose file mode and group
 * decide which local users may inject mail — Postfix's postdrop, in one socket. Messages go into
 * the same durable spool as SMTP mail, with a Received: "with local" trace field, and Date:,
 * Message-ID: and From: added when missing (RFC 5322 §3.6 requires Date and From).
 *
 * Trust: the socket's permissions are the access control. The login name comes from the client
 * (Node cannot read SO_PEERCRED), so it is recorded as claimed; it only fills in a missing sender.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, unlinkSync, mkdirSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";
import { execFileSync } from "node:child_process";
import { parsePath } from "../smtp/address.js";
import { HeaderCollector, type HeaderInfo } from "../smtp/headers.js";
import { rfc5322Date } from "../smtp/trace.js";
import { ContentPipeline, type ContentStep } from "../smtp/content-steps.js";
import { NO_FIELDS } from "../smtp/message-intake.js";
import type { NewEnvelope, SpoolWriter } from "../queue/types.js";
import type { Config } from "../config/schema.js";
import { localSubmitSocketPath, type LocalSubmitRequest, type LocalSubmitResponse } from "./local-submit-protocol.js";
import type { Logger } from "./log.js";

export interface LocalSubmitOptions {
  path: string;
  /** File mode of the socket, e.g. 0o660. */
  mode: number;
  /** Group owning the socket (members may submit), e.g. "postdrop". */
  group?: string;
  hostname: string;
  /** Sender domain for a missing -f: the first local domain. */
  domain: string;
  messageSize: number;
  headerBytes: number;
  openSpool(): Promise<SpoolWriter>;
  queued(id: string): void;
  /** Content steps (DKIM signing) before the commit, as for SMTP mail; absent: none. */
  contentSteps?(): readonly ContentStep[];
  log: Logger;
}

const MAX_REQUEST_LINE = 64 * 1024;

function groupId(name: string): number {
  if (/^\d+$/.test(name)) return Number(name);
  // getent, not a parser of /etc/group: NSS (LDAP, sssd) groups count too. execFile, no shell.
  const line = execFileSync("getent", ["group", name], { encoding: "utf8" });
  return Number(line.split(":")[2]);
}

export async function startLocalSubmit(o: LocalSubmitOptions): Promise<Server> {
  mkdirSync(dirname(o.path), { recursive: true });
  if (existsSync(o.path)) unlinkSync(o.path); // a stale socket from an earlier run
  // Half-open: the client ends its side after the message and still reads our answer.
  const server = createServer({ allowHalfOpen: true }, (socket) => void handle(socket, o));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.path, () => resolve());
  });
  chmodSync(o.path, o.mode);
  if (o.group !== undefined) chownSync(o.path, -1, groupId(o.group));
  o.log.info({ event: "local-submit-listening", path: o.path, fileMode: o.mode.toString(8) }, "listening (local submission)");
  return server;
}

/** Recipient without a domain ("root") → root@first local domain, as sendmail does. */
function qualify(address: string, domain: string): string {
  return address.includes("@") ? address : `${address}@${domain}`;
}

function checkAddress(address: string, role: "sender" | "recipient"): string | null {
  const r = parsePath(`<${address}>`, { allowNull: role === "sender", allowUtf8: false, role });
  return r.ok ? r.path.address : null;
}

async function handle(socket: Socket, o: LocalSubmitOptions): Promise<void> {
  const answer = (r: LocalSubmitResponse) => socket.end(JSON.stringify(r) + "\n");
  socket.on("error", () => undefined);
  let head: Buffer | null = Buffer.alloc(0);
  let writer: SpoolWriter | undefined;
  let collector: HeaderCollector | undefined;
  let request: LocalSubmitRequest | undefined;
  let sender = "";
  const recipients: string[] = [];
  let failed = false;
  let pending: Promise<void> = Promise.resolve();
  let content: ContentPipeline | undefined;
  let fields: HeaderInfo | undefined;
  const envelope = (): NewEnvelope => ({
    mailFrom: sender,
    client: { ip: "127.0.0.1", helo: "localhost", listener: "submission", authUser: `local:${request!.user}` },
    recipients: recipients.map((address) => ({ address })),
  });
  const refuse = (r: LocalSubmitResponse) => {
    failed = true;
    content?.abort();
    socket.removeAllListeners("data");
    void writer?.abort();
    answer(r);
  };

  const store = (pieces: Buffer[]) => {
    for (const piece of pieces) {
      content?.push(piece);
      pending = pending.then(() => writer!.write(piece));
    }
  };

  const onRequest = async (line: string, rest: Buffer) => {
    try {
      request = JSON.parse(line) as LocalSubmitRequest;
    } catch {
      return refuse({ ok: false, error: "malformed request" });
    }
    if (request.version !== 1 || !Array.isArray(request.recipients) || typeof request.user !== "string")
      return refuse({ ok: false, error: "malformed request" });
    const user = /^[A-Za-z0-9._-]{1,64}$/.test(request.user) ? request.user : "nobody";
    const s = checkAddress(request.sender ?? `${user}@${o.domain}`, "sender");
    if (s === null) return refuse({ ok: false, error: `bad sender address ${JSON.stringify(request.sender)}`, badAddress: true });
    sender = s;
    for (const r of request.recipients) {
      const a = typeof r === "string" ? checkAddress(qualify(r, o.domain), "recipient") : null;
      if (a === null) return refuse({ ok: false, error: `bad recipient address ${JSON.stringify(r)}`, badAddress: true });
      if (!recipients.includes(a)) recipients.push(a);
    }
    if (recipients.length === 0) return refuse({ ok: false, error: "no recipients", badAddress: true });
    try {
      writer = await o.openSpool();
    } catch (err) {
      return refuse({ ok: false, error: `queue unavailable: ${String(err)}`, temporary: true });
    }
    collector = new HeaderCollector({ maxHeaderBytes: o.headerBytes });
    collector.setHeaderEndHook((info) => {
      fields = info;
      return Buffer.from(traceFields(info, o, writer!.id, user, request!), "utf8");
    });
    const steps = o.contentSteps?.() ?? [];
    // The same steps as SMTP mail sees (message-intake.ts), over the same stored bytes.
    if (steps.length > 0) content = new ContentPipeline(steps, () => ({ envelope: envelope(), headers: fields ?? NO_FIELDS }), o.headerBytes + 64 * 1024);
    if (rest.length > 0) store(collector.push(rest));
  };

  // Every step runs in order on one chain: the request, each chunk, the end.
  let chain: Promise<void> = Promise.resolve();
  const then = (step: () => Promise<void> | void) => {
    chain = chain.then(step).catch((err: unknown) => {
      if (!failed) refuse({ ok: false, error: `local submission failed: ${String(err)}`, temporary: true });
    });
  };

  socket.on("data", (chunk: Buffer) => {
    if (failed) return;
    if (request === undefined && head !== null) {
      head = Buffer.concat([head, chunk]);
      const nl = head.indexOf(0x0a);
      if (nl < 0) {
        if (head.length > MAX_REQUEST_LINE) refuse({ ok: false, error: "request line too long" });
        return;
      }
      const line = head.subarray(0, nl).toString("utf8");
      const rest = head.subarray(nl + 1);
      head = null;
      socket.pause();
      then(async () => {
        await onRequest(line, rest);
        socket.resume();
      });
      return;
    }
    socket.pause();
    then(async () => {
      if (failed) return;
      if (writer!.bytesWritten + chunk.length > o.messageSize) return refuse({ ok: false, error: `message larger than ${o.messageSize} octets` });
      store(collector!.push(chunk));
      await pending;
      socket.resume();
    });
  });

  socket.on("end", () => {
    then(async () => {
      if (failed) return;
      if (!writer || !collector) return refuse({ ok: false, error: "incomplete request" });
      store(collector.finish());
      await pending;
      const env = envelope();
      let stepLog: Record<string, unknown> | undefined;
      if (content) {
        const outcome = await content.finish();
        if (!outcome.ok) {
          const why = "refusal" in outcome ? outcome.refusal.reason : `content step ${outcome.step} failed: ${String(outcome.error)}`;
          o.log.warn({ event: "data-refused", from: sender, reason: why, via: "local" }, "local submission refused");
          return refuse({ ok: false, error: why, temporary: !("refusal" in outcome) });
        }
        if (outcome.headerPrefix !== undefined) env.headerPrefix = outcome.headerPrefix;
        stepLog = outcome.logFields;
      }
      let id: string;
      try {
        id = await writer.commit(env);
      } catch (err) {
        o.log.warn({ event: "spool-error", err: String(err), via: "local" }, "local submission failed");
        return refuse({ ok: false, error: "queue write failed", temporary: true });
      }
      o.log.info(
        { ...stepLog, event: "queued", id, from: sender, to: recipients, size: writer.bytesWritten, via: "local", user: request!.user, uid: request!.uid },
        "queued (local submission)",
      );
      o.queued(id);
      answer({ ok: true, id });
    });
  });
}

/** What goes on top: Received: "with local" (RFC 5321 §4.4), then the missing RFC 5322 fields. */
function traceFields(info: HeaderInfo, o: LocalSubmitOptions, id: string, user: string, request: LocalSubmitRequest): string {
  const now = new Date();
  let top = `Received: by ${o.hostname} (Postern) with local id ${id}\r\n\t(user ${user} uid ${Number(request.uid) | 0});\r\n\t${rfc5322Date(now)}\r\n`;
  if (info.get("date") === undefined) top += `Date: ${rfc5322Date(now)}\r\n`;
  if (info.get("message-id") === undefined) top += `Message-ID: <${now.getTime().toString(36)}.${randomBytes(8).toString("hex")}@${o.hostname}>\r\n`;
  if (info.get("from") === undefined) {
    const name = (request.fullName ?? "").replace(/[\x00-\x1f\x7f"\\]/g, "");
    top += `From: ${name ? `"${name}" ` : ""}<${user}@${o.domain}>\r\n`;
  }
  return top;
}

/** Starts the socket when `localSubmit.socket` is configured; null otherwise. */
export async function startLocalSubmitFromConfig(
  config: Config,
  queue: { openSpool(): Promise<SpoolWriter>; queued(id: string): void; contentSteps?(): readonly ContentStep[] },
  log: Logger,
): Promise<{ close(): Promise<void> } | null> {
  const path = localSubmitSocketPath(config);
  if (path === null) return null;
  const server = await startLocalSubmit({
    path,
    mode: parseInt(config.localSubmit.mode, 8),
    group: config.localSubmit.group,
    hostname: config.hostname,
    domain: config.domains[0]!.toLowerCase(),
    messageSize: config.limits.messageSize,
    headerBytes: config.limits.headerBytes,
    ...queue,
    log,
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
      }),
  };
}
