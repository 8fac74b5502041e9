/**
 * `postern queue list|show|flush|delete|hold|release`: the admin's mailq, postqueue -f, postsuper.
 * Talks to the running server over its control socket (src/server/control.ts). Without a server,
 * list and show read the spool directly (read-only); changes need the server, which owns the queue.
 */
import { createConnection } from "node:net";
import { join } from "node:path";
import { Spool } from "../queue/spool.js";
import { clusterQueueRequest } from "./queue-cluster.js";
import { QueueReader, type QueueEntry } from "../queue/admin.js";
import { controlSocketPath, type ControlRequest, type ControlResponse } from "../server/control.js";
import { announce, commandConfig } from "./config-source.js";

interface CommonOptions {
  config?: string;
  json?: boolean;
}

class NoServerError extends Error {}

/** One request, one JSON line back. */
function ask(path: string, req: ControlRequest): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let buffer = "";
    socket.setEncoding("utf8");
    socket.once("connect", () => socket.write(JSON.stringify(req) + "\n"));
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      const nl = buffer.indexOf("\n");
      if (nl < 0) return;
      socket.end();
      const res = JSON.parse(buffer.slice(0, nl)) as ControlResponse;
      if (res.ok) resolve(res.result);
      else reject(new Error(res.error));
    });
    socket.once("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT" || err.code === "ECONNREFUSED") reject(new NoServerError(`no running server answers on ${path}`));
      else reject(err);
    });
    socket.once("close", () => reject(new Error("the server closed the control connection without an answer")));
  });
}

/** Operations that change the queue: they say which configuration and data directory they acted on. */
const CHANGES = new Set<ControlRequest["op"]>(["flush", "hold", "release", "delete", "delete-deferred"]);

function context(opts: CommonOptions, op: ControlRequest["op"]) {
  const resolved = commandConfig(opts.config);
  if (CHANGES.has(op)) announce(resolved);
  const { config } = resolved;
  return { config, socketPath: controlSocketPath(config.dataDir), spoolDir: join(config.dataDir, "queue") };
}

/**
 * Asks the server; for read-only operations falls back to reading the spool. Changes always go
 * through the server (its per-message locks). TODO(data-dir lock): should an offline, spool-writing
 * command be added, it must first take the data-dir lock (src/queue/data-lock.ts, lockDataDir), so
 * it can never run beside a server that owns the spool.
 */
async function request(opts: CommonOptions, req: ControlRequest, offline?: (reader: QueueReader) => Promise<unknown>): Promise<unknown> {
  const ctx = context(opts, req.op);
  try {
    return await ask(ctx.socketPath, req);
  } catch (err) {
    if (!(err instanceof NoServerError)) throw err;
    // A cluster's queue is in its database: without a server here, act on it directly (under leases).
    if (ctx.config.store.backend === "postgres") return clusterQueueRequest(ctx.config, req);
    if (!offline) throw new Error(`${err.message}: start the server (postern serve) to change the queue`);
    return offline(new QueueReader(new Spool(ctx.spoolDir)));
  }
}

function formatAge(sec: number): string {
  if (sec < 120) return `${sec}s`;
  if (sec < 7200) return `${Math.floor(sec / 60)}m`;
  if (sec < 172800) return `${Math.floor(sec / 3600)}h`;
  return `${Math.floor(sec / 86400)}d`;
}

/** mailq-style: one line per message, then one indented line per recipient not yet delivered. */
export function formatList(entries: QueueEntry[]): string {
  if (entries.length === 0) return "Mail queue is empty\n";
  const lines = [`${"ID".padEnd(20)}  ${"AGE".padStart(5)}  ${"SIZE".padStart(9)}  ${"STATUS".padEnd(8)}  SENDER`];
  for (const e of entries) {
    lines.push(`${e.id}  ${formatAge(e.ageSec).padStart(5)}  ${String(e.size).padStart(9)}  ${e.status.padEnd(8)}  <${e.sender}>`);
    for (const r of e.recipients) {
      if (r.status === "delivered") continue;
      const tries = r.attempts > 0 ? ` after ${r.attempts} attempt${r.attempts === 1 ? "" : "s"}` : "";
      lines.push(`    <${r.address}> ${r.status}${tries}${r.lastResult && r.attempts > 0 ? `: ${r.lastResult}` : ""}`);
    }
  }
  lines.push(`-- ${entries.length} message${entries.length === 1 ? "" : "s"}, ${entries.reduce((n, e) => n + e.size, 0)} octets`);
  return lines.join("\n") + "\n";
}

function print(opts: CommonOptions, result: unknown, text: string): void {
  process.stdout.write(opts.json ? JSON.stringify(result, null, 2) + "\n" : text);
}

export async function queueList(opts: CommonOptions): Promise<void> {
  const entries = (await request(opts, { op: "list" }, (r) => r.list())) as QueueEntry[];
  print(opts, entries, formatList(entries));
}

const TLS_POLICY_TEXT: Record<string, string> = {
  none: "none (route without TLS)",
  opportunistic: "opportunistic STARTTLS",
  "mta-sts-enforce": "MTA-STS enforce",
  "mta-sts-testing": "MTA-STS testing",
  dane: "DANE",
};

/** Per recipient: its state, the outbound TLS policy of the last attempt, and why it waits. */
export function formatRecipients(entry: QueueEntry): string {
  const lines = entry.recipients.map((r) => {
    const tls = r.tlsPolicy ? `; TLS policy: ${TLS_POLICY_TEXT[r.tlsPolicy] ?? r.tlsPolicy}` : "";
    const next = r.status === "pending" && r.nextAttemptAt ? `; next attempt ${r.nextAttemptAt}` : "";
    const why = r.lastResult && r.attempts > 0 ? `\n      last: ${r.lastResult}` : "";
    return `  <${r.address}> ${r.status}, ${r.attempts} attempt${r.attempts === 1 ? "" : "s"}${tls}${next}${why}`;
  });
  return `Recipients:\n${lines.join("\n")}\n`;
}

export async function queueShow(id: string, opts: CommonOptions): Promise<void> {
  const shown = (await request(opts, { op: "show", id }, (r) => r.show(id))) as { envelope: unknown; headers: string; entry: QueueEntry };
  print(opts, shown, `${JSON.stringify(shown.envelope, null, 2)}\n\n${formatRecipients(shown.entry)}\n${shown.headers}`);
}

export async function queueFlush(id: string | undefined, opts: CommonOptions): Promise<void> {
  const result = (await request(opts, { op: "flush", id })) as { flushed: number; held?: string[] };
  const held = result.held ?? [];
  const skipped =
    held.length === 0 ? "" : `; skipped ${held.length} held message${held.length === 1 ? "" : "s"} (postern queue release ID first): ${held.join(" ")}`;
  print(opts, result, `flushed ${result.flushed} message${result.flushed === 1 ? "" : "s"}${skipped}\n`);
}

export async function queueDelete(id: string | undefined, opts: CommonOptions & { allDeferred?: boolean }): Promise<void> {
  if ((id === undefined) === (opts.allDeferred !== true)) throw new Error("give a queue id or --all-deferred (not both)");
  if (opts.allDeferred) {
    const result = (await request(opts, { op: "delete-deferred" })) as { deleted: string[] };
    print(opts, result, `deleted ${result.deleted.length} deferred message${result.deleted.length === 1 ? "" : "s"}\n`);
    return;
  }
  const result = await request(opts, { op: "delete", id });
  print(opts, result, `deleted ${id}\n`);
}

export async function queueHold(id: string, opts: CommonOptions): Promise<void> {
  print(opts, await request(opts, { op: "hold", id }), `held ${id}\n`);
}

export async function queueRelease(id: string, opts: CommonOptions): Promise<void> {
  print(opts, await request(opts, { op: "release", id }), `released ${id}\n`);
}
