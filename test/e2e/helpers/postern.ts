/**
 * Starts the real `postern serve` process on ephemeral loopback ports with a config written to a
 * temp folder, and reads its JSON log lines (ports, events) from stdout.
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdtemp, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { stringify } from "yaml";
import { baseTestConfig } from "../../helpers/test-config.js";

export const ROOT = resolve(import.meta.dirname, "../../../..");
export const BIN = join(ROOT, "bin/postern.js");

export interface LogLine {
  event?: string;
  msg?: string;
  [key: string]: unknown;
}

export interface TestUser {
  address: string;
  password: string;
  senders?: string[];
  /** `postern user add --relay-client` */
  relayClient?: boolean;
}

export interface Postern {
  dir: string;
  configPath: string;
  ports: { mta: number; submission: number; submissions: number };
  logs: LogLine[];
  /** Resolves with the first log line (past or future) matching the predicate. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Sends a signal without waiting (SIGHUP reload); `pid` is the running server's process id. */
  kill(signal: NodeJS.Signals): void;
  readonly pid: number;
  /** Everything the server wrote to stderr so far (an unhandled error would land here). */
  stderr(): string;
  /** The server process is still running. */
  running(): boolean;
  /** The disk fault the next (re)start injects into the spool writer (see startPostern). */
  spoolFault: string | undefined;
  /** Start the server again on the same data directory (restart test). */
  restart(): Promise<void>;
  cleanup(): Promise<void>;
}

export function runCli(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = execFile(process.execPath, [BIN, ...args], { cwd: ROOT }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      resolvePromise({ code: typeof code === "number" ? code : 1, stdout, stderr });
    });
    child.stdin?.end(input ?? "");
  });
}

/**
 * `spoolFault` ("ENOSPC@4096", "EIO@commit"): start through serve-with-fault.ts, whose spool writer
 * fails as a full or broken disk would; Postern.spoolFault changes it for the next (re)start.
 */
export async function startPostern(opts: { config?: Record<string, unknown>; users?: TestUser[]; spoolFault?: string } = {}): Promise<Postern> {
  const dir = await mkdtemp(join(tmpdir(), "postern-e2e-"));
  const config: Record<string, unknown> = {
    ...baseTestConfig(dir),
    limits: { authFailureDelayMs: 10 },
    ...opts.config,
    // A test's own `process` keys keep the single process unless it sets workers itself.
    process: { workers: 1, ...(opts.config?.process as Record<string, unknown> | undefined) },
  };
  const configPath = join(dir, "postern.yaml");
  await writeFile(configPath, stringify(config));
  for (const u of opts.users ?? []) {
    const args = ["user", "add", u.address, "--password-stdin", "--config", configPath];
    for (const s of u.senders ?? []) args.push("--sender", s);
    if (u.relayClient) args.push("--relay-client");
    const r = await runCli(args, u.password + "\n");
    if (r.code !== 0) throw new Error(`user add failed: ${r.stderr}`);
  }

  let child: ChildProcess;
  const handle = { spoolFault: opts.spoolFault };
  const logs: LogLine[] = [];
  const waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  const ports = { mta: 0, submission: 0, submissions: 0 };
  let allStderr = "";

  const launch = async () => {
    const serve = handle.spoolFault === undefined ? [BIN, "serve"] : [join(import.meta.dirname, "serve-with-fault.js"), handle.spoolFault];
    child = spawn(process.execPath, [...serve, "--config", configPath], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => ((stderr += d.toString()), (allStderr += d.toString())));
    createInterface({ input: child.stdout! }).on("line", (text) => {
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { msg: text };
      }
      logs.push(line);
      for (const w of [...waiters]) {
        if (w.pred(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    });
    const listening = new Set<string>();
    const started = logs.length;
    await new Promise<void>((ok, fail) => {
      const check = (l: LogLine) => {
        if (l.event === "listening") {
          ports[l.mode as keyof typeof ports] = l.port as number;
          listening.add(l.mode as string);
        }
        return listening.size === (config.listeners as unknown[]).length;
      };
      for (const l of logs.slice(started)) check(l);
      waiters.push({ pred: check, resolve: () => ok() });
      child.once("exit", (code) => fail(new Error(`postern exited early (${code}): ${stderr}`)));
    });
  };
  await launch();

  const waitForLog = (pred: (l: LogLine) => boolean, timeoutMs = 10_000) => {
    const found = logs.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise<LogLine>((ok, fail) => {
      const timer = setTimeout(() => {
        const recent = logs
          .slice(-8)
          .map((l) => JSON.stringify(l))
          .join("\n");
        fail(new Error(`timed out waiting for a log line; the last ones:\n${recent}`));
      }, timeoutMs);
      waiters.push({ pred, resolve: (l) => (clearTimeout(timer), ok(l)) });
    });
  };
  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    // After a clean stop, "close" rather than "exit": stdout is drained too, so every line the server wrote (its log
    // is flushed at exit) is in `logs`. A SIGKILLed primary's workers may still hold stdout: there, "exit" is enough.
    const exited = new Promise<void>((ok) => child.once(signal === "SIGKILL" ? "exit" : "close", () => ok()));
    child.kill(signal);
    await exited;
  };
  return {
    get spoolFault() {
      return handle.spoolFault;
    },
    set spoolFault(spec: string | undefined) {
      handle.spoolFault = spec;
    },
    dir,
    configPath,
    ports,
    logs,
    waitForLog,
    stop,
    kill: (signal) => void child.kill(signal),
    get pid() {
      return child.pid!;
    },
    stderr: () => allStderr,
    running: () => child.exitCode === null && child.signalCode === null,
    restart: async () => {
      await stop();
      await launch();
    },
    cleanup: async () => {
      await stop("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    },
  };
}
