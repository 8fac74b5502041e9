/** Shared fixtures for queue tests: temp spools, an envelope, a logger that remembers, a DSN rig. */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Spool, type SpoolOptions } from "../../src/queue/spool.js";
import type { DeliverFn, NewEnvelope } from "../../src/queue/types.js";
import { DsnNotifier } from "../../src/queue/bounce.js";
import { QueueRunner } from "../../src/queue/scheduler.js";
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

/**
 * A real spool, DsnNotifier and queue runner on a clock that starts at `t0` and moves only with
 * `advance`; `deliver` answers every attempt, reports included. `submit` spools `body` for the
 * given envelope (from alice@example.net over submission unless it says otherwise) and runs what
 * is due.
 */
export async function dsnRig(o: { t0: number; body: string; deliver: DeliverFn; delayWarningSec?: number }) {
  let t = o.t0;
  const now = () => t;
  const spool = new Spool(await tempDir(), { fsync: false, now });
  await spool.init();
  const logger = memoryLogger();
  let runner!: QueueRunner;
  const dsn = new DsnNotifier({
    spool,
    hostname: "mail.example.org",
    isLocalAddress: (a) => a.endsWith("@example.org"),
    delayWarningSec: o.delayWarningSec ?? 0,
    maxLifetimeSec: 5 * 86400,
    enqueue: (id) => runner.enqueued(id),
    logger,
    now,
  });
  runner = new QueueRunner({ spool, deliver: o.deliver, concurrency: 2, logger, now, onFinal: dsn.onFinal, onDeferred: dsn.onDeferred });
  await runner.start();
  const submit = async (env: Partial<NewEnvelope> & { recipients: NewEnvelope["recipients"] }) => {
    const writer = await spool.openWriter();
    await writer.write(Buffer.from(o.body));
    const id = await writer.commit({
      mailFrom: "alice@example.net",
      client: { ip: "192.0.2.1", helo: "client.example.net", listener: "submission", authUser: "alice@example.net" },
      ...env,
    });
    runner.enqueued(id);
    await runner.runDue();
    return id;
  };
  return { spool, logger, runner, dsn, submit, advance: (ms: number) => void (t += ms) };
}
