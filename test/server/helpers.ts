/**
 * The real server started in this process (real sockets on 127.0.0.1 port 0, real TLS, real
 * SQLite), with its JSON log lines captured so tests can await events and read limiter counters.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { configSchema } from "../../src/config/schema.js";
import { baseTestConfig } from "../helpers/test-config.js";
import { startServer, type RunningServer } from "../../src/server/server.js";

export interface LogLine {
  event?: string;
  [key: string]: unknown;
}

export interface TestServer {
  server: RunningServer;
  dir: string;
  ports: { mta: number; submission: number; submissions: number };
  logs: LogLine[];
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Resolves once the limiter counts no open connection (polled on log lines and a short timer). */
  waitForNoConnections(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startTestServer(overrides: Record<string, unknown> = {}): Promise<TestServer> {
  const dir = await mkdtemp(join(tmpdir(), "postern-limits-"));
  const raw = {
    ...baseTestConfig(dir),
    ...overrides,
    limits: { authFailureDelayMs: 10, greetPauseMs: 0, ...(overrides.limits as object | undefined) },
    log: { level: "debug" },
  };
  const config = configSchema.parse(raw);
  const logs: LogLine[] = [];
  const waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const text of chunk.toString("utf8").split("\n")) {
        if (!text) continue;
        const line = JSON.parse(text) as LogLine;
        logs.push(line);
        for (const w of [...waiters]) if (w.pred(line)) waiters.splice(waiters.indexOf(w), 1), w.resolve(line);
      }
      done();
    },
  });
  const log = pino({ level: "debug", base: undefined }, sink);
  const server = await startServer(config, log);
  const ports = { mta: 0, submission: 0, submissions: 0 };
  for (const l of server.listeners) ports[l.mode] = l.port;

  const waitForLog = (pred: (l: LogLine) => boolean, timeoutMs = 10_000) => {
    const found = logs.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise<LogLine>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`no such log line; last: ${JSON.stringify(logs.slice(-5))}`)), timeoutMs);
      waiters.push({ pred, resolve: (l) => (clearTimeout(timer), ok(l)) });
    });
  };
  const waitForNoConnections = async (timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    // Releases happen on socket 'close' events inside the server, which the test cannot await directly.
    while (server.limits().connections !== 0) {
      if (Date.now() > deadline) throw new Error(`connections still open: ${JSON.stringify(server.limits())}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return {
    server,
    dir,
    ports,
    logs,
    waitForLog,
    waitForNoConnections,
    stop: async () => {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
