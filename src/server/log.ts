/**
 * Logging: one JSON line per event (pino), or a readable line for people at a terminal.
 * Values from the client are JSON-escaped in both modes, so control bytes never reach the log raw
 * (SECURITY.md rule 19).
 */
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

/** How long a log line may wait in the batch before it is written anyway. */
export const LOG_FLUSH_MS = 200;

/**
 * stdout, written in batches of ≥ 4 KB (about 15 lines, 3 messages) instead of a thread-pool trip
 * per line, and at least every LOG_FLUSH_MS. pino flushes what is left synchronously on exit
 * (process.exit, SIGTERM's shutdown); a kill -9 loses at most the last LOG_FLUSH_MS of lines.
 */
function batchedStdout(): ReturnType<typeof pino.destination> {
  const dest = pino.destination({ dest: 1, sync: false, minLength: 4096 });
  let pending = false;
  const write = dest.write.bind(dest);
  dest.write = (line: string) => {
    pending = true;
    return write(line);
  };
  setInterval(() => {
    if (!pending) return;
    pending = false;
    dest.flush();
  }, LOG_FLUSH_MS).unref();
  return dest;
}

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
