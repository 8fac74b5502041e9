/**
 * A worker process (process.workers > 1; src/server/workers.ts says who does what). Forked by the
 * primary, already as process.user; told its configuration and the certificate over IPC; serves
 * the SMTP connections the primary hands it. Signals are the primary's to act on: SIGHUP and
 * SIGINT are ignored here (the primary passes a reload on, or stops everything), SIGTERM drains
 * this worker alone. When the primary is gone (the IPC channel closes), the worker exits at once:
 * its listeners went with the primary, and a restarted primary recovers the spool.
 */
import { writeSync } from "node:fs";
import type { Socket } from "node:net";
import { pino } from "pino";
import { createLogger } from "./log.js";
import { Metrics } from "./metrics.js";
import { startServer, type RunningServer } from "./server.js";
import { describeReload } from "./operate.js";
import { holdWorkersLock } from "../queue/data-lock.js";
import type { FromWorker, ToWorker, WorkerQuestion } from "./worker-protocol.js";
import type { HourlySeries } from "./hourly-counters.js";

const send = (msg: FromWorker): void => {
  if (process.connected) process.send!(msg);
};

let server: RunningServer | undefined;
let metrics: Metrics | undefined;
let stopping = false;
let graceMs = 30_000;

// At once and unconditionally (no exit handlers, no log flush to a reader that is gone): what
// this worker acknowledged is durable already, and the next primary waits for it to be gone.
process.on("disconnect", () => process.kill(process.pid, "SIGKILL"));
// A fatal error ends the worker at once, after saying why on stderr: Node's own exit path can wait
// forever for thread-pool work (a log write) that will not finish; the primary starts another.
process.on("uncaughtException", (err) => {
  try {
    writeSync(2, `postern worker ${process.pid}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  } finally {
    process.kill(process.pid, "SIGKILL");
  }
});
process.on("SIGHUP", () => undefined);
process.on("SIGINT", () => undefined);
process.on("SIGTERM", () => {
  if (!server || stopping) return;
  stopping = true;
  void server.ops
    .drain(graceMs)
    .then(() => server!.close())
    .finally(() => process.exit(0));
});

async function answer(q: WorkerQuestion): Promise<unknown> {
  if (!server) throw new Error("not started");
  switch (q.op) {
    case "reload":
      return server.ops.reload(q.config);
    case "drain":
      stopping = true;
      return server.ops.drain(q.graceMs);
    case "metrics":
      return metrics!.registry.getMetricsAsJSON();
    case "close":
      stopping = true;
      await server.close();
      // Answered, then gone: the primary waits for the exit.
      setImmediate(() => process.exit(0));
      return undefined;
  }
}

process.on("message", (msg: ToWorker, handle?: Socket) => {
  switch (msg.t) {
    case "start":
      return void start(msg).catch((err: unknown) => {
        send({ t: "failed", error: err instanceof Error ? err.message : String(err) });
        setImmediate(() => process.exit(1));
      });
    case "conn":
      if (!handle) return;
      if (!server || stopping) return void handle.destroy();
      return server.serveHandedOver!(msg.listener, handle);
    case "shared":
      return server?.sharedLimits?.apply(msg.event, msg.from);
    case "peer-gone":
      return server?.sharedLimits?.peerGone(msg.from);
    case "ask":
      return void answer(msg.q).then(
        (result) => send({ t: "answer", seq: msg.seq, ok: true, ...(result === undefined ? {} : { result: result as never }) }),
        (err: unknown) => send({ t: "answer", seq: msg.seq, ok: false, error: err instanceof Error ? err.message : String(err) }),
      );
  }
});

async function start(msg: Extract<ToWorker, { t: "start" }>): Promise<void> {
  const { config } = msg;
  graceMs = config.process.shutdownGraceMs;
  // Held until this process ends: a primary started after a crash waits for it before recovery.
  holdWorkersLock(config.dataDir);
  metrics = new Metrics();
  // JSON to the primary, which writes whole lines to its own log (and formats them if pretty).
  const log = createLogger({ level: config.log.level, format: "json" }, process.stdout, metrics.observe).child({ worker: msg.worker });
  // The log goes to the primary: a write that fails means the primary is gone (as on disconnect).
  const destination = (log as unknown as Record<symbol, NodeJS.EventEmitter | undefined>)[pino.symbols.streamSym];
  destination?.on("error", () => process.kill(process.pid, "SIGKILL"));
  server = await startServer(config, log, {
    role: {
      kind: "worker",
      tlsMaterial: msg.tlsMaterial,
      queued: (id) => send({ t: "queued", id }),
      publish: (event) => send({ t: "shared", event }),
    },
    ...(msg.spoolFault ? { spoolFault: msg.spoolFault } : {}),
  });
  const running = server;
  metrics.attach({ connections: () => running.ops.connectionCounts(), queue: () => ({}), limits: () => running.limits() });
  // A reload's result, per worker (the primary logs its own as `reload`).
  const reload = running.ops.reload.bind(running.ops);
  running.ops.reload = async (fresh) => {
    try {
      const report = await reload(fresh);
      log.info({ event: "worker-reload", ok: true, pid: process.pid, ...report }, describeReload(report));
      return report;
    } catch (err) {
      log.error({ event: "worker-reload", ok: false, pid: process.pid, err: err instanceof Error ? err.message : String(err) }, "reload failed in this worker");
      throw err;
    }
  };
  // The web dashboard (on the primary) gets this worker's hourly counts and open sessions.
  const hourly = metrics.hourly;
  const addHourly = hourly.add.bind(hourly);
  const pending: Partial<Record<HourlySeries, number>> = {};
  hourly.add = (series, n = 1) => {
    addHourly(series, n);
    pending[series] = (pending[series] ?? 0) + n;
  };
  let lastSessions = "";
  setInterval(() => {
    const sessions = running.ops.connectionCounts();
    const key = JSON.stringify(sessions);
    if (Object.keys(pending).length === 0 && key === lastSessions) return;
    send({ t: "stats", hourly: { ...pending }, sessions });
    for (const k of Object.keys(pending)) delete pending[k as HourlySeries];
    lastSessions = key;
  }, 1000).unref();
  send({ t: "ready" });
}
