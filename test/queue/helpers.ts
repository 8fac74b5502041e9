/** Shared fixtures for queue tests: temp spools, an envelope, a logger that remembers. */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Spool, type SpoolOptions } from "../../src/queue/spool.js";
import type { NewEnvelope } from "../../src/queue/types.js";
import type { Log } from "../../src/base/log.js";

export async function tempDir(prefix = "postern-queue-"): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function newSpool(opts: SpoolOptions = {}, dir?: string): Promise<Spool> {
  const spool = new Spool(dir ?? (await tempDir()), opts);
  await spool.init();
  return spool;
}

export function newEnvelope(recipients: string[] = ["rcpt@example.org"], mailFrom = "sender@example.net"): NewEnvelope {
  return {
    mailFrom,
    body: "8BITMIME",
    client: { ip: "127.0.0.1", helo: "client.example.net", listener: "submission", authUser: "sender@example.net" },
    recipients: recipients.map((address) => ({ address })),
  };
}

export async function commitMessage(spool: Spool, body: Buffer | string, recipients?: string[]): Promise<string> {
  const writer = await spool.openWriter();
  await writer.write(Buffer.from(body));
  return writer.commit(newEnvelope(recipients));
}

export interface LogEntry {
  level: "info" | "warn" | "error";
  obj: object;
  msg: string;
}

export function memoryLogger(): Log & { entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  return {
    entries,
    info: (obj, msg) => entries.push({ level: "info", obj, msg }),
    warn: (obj, msg) => entries.push({ level: "warn", obj, msg }),
    error: (obj, msg) => entries.push({ level: "error", obj, msg }),
  };
}
