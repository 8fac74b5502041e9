/**
 * Several processes (process.workers > 1): the primary keeps what has one owner, the workers serve
 * the SMTP sessions.
 *
 * - The primary binds the listeners (as root when started so), drops root, recovers the spool and
 *   starts the queue runner, the control socket, the sendmail socket, the web and admin listeners;
 *   then it forks the workers (already as process.user). It accepts each connection without
 *   reading from it and hands the socket to the next ready worker, round-robin (what node's
 *   `cluster` does on Linux, but with listeners the primary bound before dropping root).
 * - A worker runs the sessions and commits each message to the one spool directory (queue ids are
 *   unique without coordination: queue-id.ts), then tells the primary "queued <id>"; the primary's
 *   runner delivers it. One owner of delivery means no double delivery without any lock between
 *   processes; the spool's leases (QueueStore.claim) are what a shared PostgreSQL queue will use
 *   between nodes.
 * - The AUTH throttle, send limits and connection caps are kept whole in every process
 *   (shared-limits.ts); the credential cache is per process and needs nothing: each login reads the
 *   user's row, and a cached success counts only while the stored hash is unchanged (auth/cache.ts).
 * - SIGHUP, the SIGTERM drain and /metrics reach every worker through the primary (`operations`,
 *   `metrics`). A worker that dies is logged and replaced; what it committed but had not reported
 *   is found in the spool (QueueRunner.rescan). A worker whose primary is gone exits at once.
 */
import { fork, type ChildProcess } from "node:child_process";
import type { Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import type { Config } from "../config/schema.js";
import type { SpoolFault } from "../queue/spool-writer.js";
import type { Logger } from "./log.js";
import type { Operations, ReloadReport } from "./operate.js";
import type { SharedLimitEvent, SharedLimits } from "./shared-limits.js";
import type { TlsMaterial } from "./tls.js";
import type { HourlyCounters, HourlySeries } from "./hourly-counters.js";
import type { FromWorker, ToWorker, WorkerMetrics, WorkerQuestion } from "./worker-protocol.js";

const WORKER_MAIN = fileURLToPath(new URL("./worker-main.js", import.meta.url));
/** A worker that has not said ready by then failed to start. */
const START_TIMEOUT_MS = 30_000;
/** A worker that died sooner than this after starting is replaced after a growing pause. */
const STABLE_AFTER_MS = 10_000;
/** Connections held while no worker is ready (all restarting); more are refused by closing. */
const MAX_HELD = 1000;

export interface WorkerPoolOptions {
  config: Config;
  log: Logger;
  tlsMaterial: TlsMaterial;
  spoolFault?: SpoolFault;
  /** A worker committed a message. */
  queued(id: string): void;
  /** The primary's own copy of the shared counters (the web dashboard reads its lockouts). */
  shared: SharedLimits;
  /** A worker ended: messages it committed without telling are still in the spool. */
  workerGone(): void;
  /** The web dashboard's per-hour counts: the workers' events are added here. */
  hourly?: HourlyCounters;
}

export interface WorkerPool {
  /** Hands an accepted, unread connection of listener `index` to the next ready worker. */
  dispatch(index: number, socket: Socket): void;
  /** The primary's operations extended to every worker (reload, drain). */
  operations(own: Operations): Operations;
  /** Every worker's metrics, for the aggregate on /metrics. */
  metrics(): Promise<WorkerMetrics[]>;
  /** Open SMTP sessions per listener mode over every worker (as last reported, within a second). */
  sessionCounts(): Record<string, number>;
  /** The running workers' process ids, by worker number. */
  pids(): Map<number, number>;
  /** A change the primary itself made to the shared counters (a web login failure) reaches every worker. */
  share(event: SharedLimitEvent): void;
  /** Ends every worker (their sessions are cut) and waits for them to exit. */
  close(): Promise<void>;
}

interface Slot {
  n: number;
  child: ChildProcess;
  ready: boolean;
  startedAt: number;
  /** Consecutive early deaths, for the restart pause. */
  failures: number;
  pending: Map<number, { resolve(v: unknown): void; reject(e: Error): void }>;
  sessions: Record<string, number>;
}

export async function startWorkerPool(o: WorkerPoolOptions): Promise<WorkerPool> {
  const { config, log } = o;
  const slots = new Map<number, Slot>();
  const held: { index: number; socket: Socket }[] = [];
  let next = 0;
  let seq = 0;
  let closing = false;
  /** Past the first start: from then on a worker that dies is replaced, even one still starting. */
  let started = false;
  // Workers' JSON lines go through the primary's own log stream, whole lines only, so lines from
  // several processes never interleave mid-line (and the pretty format is applied once, here).
  const out = (log as unknown as Record<symbol, { write(s: string): void } | undefined>)[pino.symbols.streamSym] ?? process.stdout;

  const send = (slot: Slot, msg: ToWorker, handle?: Socket): Promise<void> =>
    new Promise((resolve, reject) => {
      if (!slot.child.connected) return reject(new Error(`worker ${slot.n} is gone`));
      const done = (err: Error | null) => (err ? reject(err) : resolve());
      if (handle) slot.child.send(msg, handle, { keepOpen: false }, done);
      else slot.child.send(msg, done);
    });

  const ask = <T>(slot: Slot, q: WorkerQuestion): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = ++seq;
      slot.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      send(slot, { t: "ask", seq: id, q }).catch((err: Error) => {
        slot.pending.delete(id);
        reject(err);
      });
    });

  const flushHeld = () => {
    while (held.length > 0 && [...slots.values()].some((s) => s.ready)) {
      const h = held.shift()!;
      if (!h.socket.destroyed) dispatch(h.index, h.socket);
    }
  };

  const dispatch = (index: number, socket: Socket) => {
    socket.on("error", () => undefined);
    const ready = [...slots.values()].filter((s) => s.ready && s.child.connected);
    if (ready.length === 0) {
      if (closing || held.length >= MAX_HELD) return void socket.destroy();
      return void held.push({ index, socket });
    }
    const slot = ready[next++ % ready.length]!;
    send(slot, { t: "conn", listener: index }, socket).catch(() => socket.destroy());
  };

  const spawn = (n: number, failures: number): Promise<void> => {
    const child = fork(WORKER_MAIN, [], { serialization: "advanced", stdio: ["ignore", "pipe", "inherit", "ipc"] });
    const slot: Slot = { n, child, ready: false, startedAt: Date.now(), failures, pending: new Map(), sessions: {} };
    slots.set(n, slot);
    let partial = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      const end = chunk.lastIndexOf("\n");
      if (end < 0) return void (partial += chunk);
      out.write(partial + chunk.slice(0, end + 1));
      partial = chunk.slice(end + 1);
    });
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker ${n} did not start within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
      timer.unref();
      child.on("message", (msg: FromWorker) => {
        switch (msg.t) {
          case "ready":
            clearTimeout(timer);
            slot.ready = true;
            log.info({ event: "worker-started", worker: n, pid: child.pid }, `worker ${n} serving (pid ${child.pid})`);
            resolve();
            return flushHeld();
          case "failed":
            clearTimeout(timer);
            return reject(new Error(`worker ${n}: ${msg.error}`));
          case "queued":
            return o.queued(msg.id);
          case "stats":
            slot.sessions = msg.sessions;
            for (const [series, n] of Object.entries(msg.hourly)) o.hourly?.add(series as HourlySeries, n);
            return;
          case "shared": {
            const from = String(child.pid);
            o.shared.apply(msg.event, from);
            for (const other of slots.values())
              if (other !== slot && other.child.connected) void send(other, { t: "shared", from, event: msg.event }).catch(() => undefined);
            return;
          }
          case "answer": {
            const p = slot.pending.get(msg.seq);
            if (!p) return;
            slot.pending.delete(msg.seq);
            return msg.ok ? p.resolve(msg.result) : p.reject(new Error(msg.error));
          }
        }
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`worker ${n} exited while starting (${signal ?? `code ${code}`})`));
      });
    });
    child.once("exit", (code, signal) => {
      if (partial) out.write(partial + "\n");
      for (const p of slot.pending.values()) p.reject(new Error(`worker ${n} exited`));
      slot.pending.clear();
      slot.ready = false;
      if (slots.get(n) === slot) slots.delete(n);
      const from = String(child.pid);
      o.shared.peerGone(from);
      for (const other of slots.values()) void send(other, { t: "peer-gone", from }).catch(() => undefined);
      if (closing || !started) return;
      const early = Date.now() - slot.startedAt < STABLE_AFTER_MS;
      const pauseMs = early ? Math.min(30_000, 250 * 2 ** slot.failures) : 0;
      log.error(
        { event: "worker-exited", worker: n, pid: child.pid, code, signal, restartInMs: pauseMs },
        `worker ${n} (pid ${child.pid}) exited (${signal ?? `code ${code}`}); starting another`,
      );
      o.workerGone();
      setTimeout(() => {
        if (closing) return;
        // A replacement that fails is logged here, and replaced in turn by its exit handler.
        spawn(n, early ? slot.failures + 1 : 0).catch((err: Error) =>
          log.error({ event: "worker-start-failed", worker: n, err: err.message }, `worker ${n} could not be started`),
        );
      }, pauseMs).unref();
    });
    void send(slot, { t: "start", worker: n, config, tlsMaterial: o.tlsMaterial, ...(o.spoolFault ? { spoolFault: o.spoolFault } : {}) }).catch(
      () => undefined,
    );
    return ready;
  };

  const stopAll = async (): Promise<void> => {
    closing = true;
    for (const h of held.splice(0)) h.socket.destroy();
    await Promise.all(
      [...slots.values()].map(async (slot) => {
        const exited = new Promise<void>((resolve) => {
          if (slot.child.exitCode !== null || slot.child.signalCode !== null) return resolve();
          slot.child.once("exit", () => resolve());
        });
        await ask(slot, { op: "close" }).catch(() => undefined);
        const timer = setTimeout(() => slot.child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }),
    );
  };

  try {
    await Promise.all(Array.from({ length: config.process.workers }, (_, i) => spawn(i + 1, 0)));
    started = true;
  } catch (err) {
    await stopAll();
    throw err;
  }

  return {
    dispatch,
    operations(own) {
      return {
        connectionCounts: () => own.connectionCounts(),
        async reload(fresh) {
          const report: ReloadReport = await own.reload(fresh);
          // Each worker applies the same file and logs its own result (`worker-reload`).
          await Promise.all([...slots.values()].map((s) => ask(s, { op: "reload", config: fresh }).catch(() => undefined)));
          return report;
        },
        async drain(graceMs) {
          closing = true;
          for (const h of held.splice(0)) h.socket.destroy();
          const [mine, ...theirs] = await Promise.all([
            own.drain(graceMs),
            ...[...slots.values()].map((s) => ask<{ remaining: number }>(s, { op: "drain", graceMs }).catch(() => ({ remaining: 0 }))),
          ]);
          return { remaining: theirs.reduce((sum, r) => sum + r.remaining, mine!.remaining) };
        },
      };
    },
    metrics: () => Promise.all([...slots.values()].filter((s) => s.ready).map((s) => ask<WorkerMetrics>(s, { op: "metrics" }).catch(() => []))),
    sessionCounts() {
      const counts: Record<string, number> = {};
      for (const s of slots.values()) for (const [mode, n] of Object.entries(s.sessions)) counts[mode] = (counts[mode] ?? 0) + n;
      return counts;
    },
    pids: () => new Map([...slots.values()].map((s) => [s.n, s.child.pid!])),
    share(event) {
      const from = String(process.pid);
      for (const s of slots.values()) if (s.child.connected) void send(s, { t: "shared", from, event }).catch(() => undefined);
    },
    close: stopAll,
  };
}
