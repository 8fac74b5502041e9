/**
 * Logging: one JSON line per event (pino), or a readable line for people at a terminal.
 * Values from the client are JSON-escaped in both modes, so control bytes never reach the log raw
 * (SECURITY.md rule 19).
 */
import { EventEmitter } from "node:events";
import { writeSync } from "node:fs";
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";

export type { Logger } from "pino";

/** Sees every log call's fields and the logger's bindings (the metrics listen here: src/server/metrics.ts). */
export type LogObserver = (fields: Record<string, unknown>, bindings: Record<string, unknown>) => void;

export function createLogger(opts: { level: string; format: "json" | "pretty" }, out: NodeJS.WritableStream = process.stdout, observe?: LogObserver): Logger {
  // pino's bindings() parses the logger's serialised bindings on every call; a child logger's do
  // not change (nothing here calls setBindings), so each logger's are parsed once.
  const bindingsOf = new WeakMap<Logger, Record<string, unknown>>();
  const hooks = observe && {
    logMethod(this: Logger, args: Parameters<Logger["info"]>, method: (...a: unknown[]) => void) {
      const fields = args[0];
      if (fields !== null && typeof fields === "object") {
        let bindings = bindingsOf.get(this);
        if (bindings === undefined) bindingsOf.set(this, (bindings = this.bindings()));
        observe(fields as Record<string, unknown>, bindings);
      }
      return method.apply(this, args);
    },
  };
  const base = { base: undefined, timestamp: isoTimeOncePerMs, level: opts.level, ...(hooks ? { hooks } : {}) };
  if (opts.format === "json") return pino(base, batchedStdout());
  return pino(base, readableStream(out));
}

let lastTimeMs = -1;
let lastTimeField = "";

/** pino's isoTime, formatted once per millisecond: a message's log lines mostly share one. */
function isoTimeOncePerMs(): string {
  const now = Date.now();
  if (now !== lastTimeMs) {
    lastTimeMs = now;
    lastTimeField = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTimeField;
}

/**
 * stdout, written once per turn of the event loop: the lines logged while handling one batch of
 * I/O are joined and written with one synchronous write(2) when the turn ends (setImmediate).
 * One asynchronous write per line — a trip through libuv's thread pool each — was measured at
 * ~0.6 ms of CPU per relayed message (docs/PERFORMANCE.md). A line reaches stdout within the turn
 * that logged it (no timer to wait for, nothing lost to a kill -9 but the current turn), and what
 * is left at exit is written on the way out.
 */
function batchedStdout(fd = 1): EventEmitter & { write(line: string): void } {
  let pending = "";
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    let bytes = Buffer.from(pending);
    pending = "";
    while (bytes.length > 0) {
      try {
        bytes = bytes.subarray(writeSync(fd, bytes));
      } catch (err) {
        // A non-blocking pipe that is full: wait a moment, as pino's own destination does.
        if ((err as NodeJS.ErrnoException).code === "EAGAIN") Atomics.wait(WAIT, 0, 0, 10);
        else {
          // The reader is gone (EPIPE) or the disk failed: logging must not stop mail. A worker
          // listens for "error" (its reader is the primary: worker-main.ts).
          if (dest.listenerCount("error") > 0) dest.emit("error", err);
          return;
        }
      }
    }
  };
  process.on("exit", flush);
  const dest = Object.assign(new EventEmitter(), {
    write(line: string) {
      pending += line;
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
  });
  return dest;
}

const WAIT = new Int32Array(new SharedArrayBuffer(4));

const LEVELS: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };

function readableStream(out: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (line) out.write(formatReadable(line) + "\n");
      }
      done();
    },
  });
}

export function formatReadable(jsonLine: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(jsonLine) as Record<string, unknown>;
  } catch {
    return JSON.stringify(jsonLine);
  }
  const { time, level, msg, ...rest } = rec;
  const fields = Object.entries(rest)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "string" && /^[\x21-\x7e]*$/.test(v) ? v : JSON.stringify(v)}`);
  return `${String(time)} ${LEVELS[level as number] ?? String(level)} ${String(msg)} ${fields.join(" ")}`.trimEnd();
}
