/**
 * Postern, this build: `bin/postern.js serve` with a generated config in the contender's folder,
 * fsync on (the default), log level info (the default, one JSON line per event, to a file).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { openSync, closeSync, existsSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { stringify } from "yaml";
import { SqliteUserStore } from "../../src/auth/sqlite-store.js";
import { configSchema } from "../../src/config/schema.js";
import { dkimKeysDir, generateKey } from "../../src/dkim/keys.js";
import { countMaildirNew } from "./common.js";
import { LOCAL_DOMAIN, LOCAL_RECIPIENT, type Contender, type ContenderFactory, type ContenderSetup } from "./types.js";

const ROOT = resolve(import.meta.dirname, "../../..");

export const postern: ContenderFactory = posternContender("Postern", false);

/**
 * Postern with `process.workers: 2` (issue 18): skipped with the reason while this build has no
 * such setting. Pinned to every core the bench has: it exists to use more than one.
 */
export const posternWorkers: ContenderFactory = {
  name: "Postern (2 workers)",
  async prepare() {
    return workersSupported() ? null : "this build has no process.workers setting";
  },
  start: (setup) => startPostern("Postern (2 workers)", false, setup, 2),
};

/** True when the config schema knows `process.workers` (strict objects reject unknown keys). */
function workersSupported(): boolean {
  const parsed = configSchema.safeParse({ process: { workers: 1 } });
  return parsed.success || !parsed.error.issues.some((i) => i.code === "unrecognized_keys" && i.path.join(".") === "process");
}

/**
 * The same server with DKIM keys for the sender's domain (example.org), so every submitted message
 * is signed: run beside "Postern" (`--dkim`), the pair measures the CPU that signing costs.
 */
export const posternDkim: ContenderFactory = posternContender("Postern (DKIM)", true);

function posternContender(name: string, dkim: boolean): ContenderFactory {
  return {
    name,
    async prepare() {
      return null;
    },
    start: (setup) => startPostern(name, dkim, setup),
  };
}

/**
 * `--baseline DIR`: another build of Postern (DIR holds its bin/ and dist/, and node_modules or a
 * link to it) beside this one, so a change's effect is measured in the same rounds, under the
 * same machine noise; the report pairs the two round by round.
 */
export function posternBaseline(root: string): ContenderFactory {
  const name = "Postern (baseline)";
  return {
    name,
    async prepare() {
      return existsSync(join(root, "bin/postern.js")) ? null : `no bin/postern.js in ${root}`;
    },
    start: (setup) => startPostern(name, false, setup, 1, resolve(root), baselineConfig()),
  };
}

async function startPostern(name: string, dkim: boolean, setup: ContenderSetup, workers = 1, root = ROOT, extra = extraConfig()): Promise<Contender> {
  const dataDir = join(setup.workDir, "data");
  const mailRoot = join(setup.workDir, "mail");
  mkdirSync(dataDir, { recursive: true });
  const config = {
    hostname: "postern.bench.test",
    dataDir,
    domains: [LOCAL_DOMAIN],
    listeners: [
      { address: "127.0.0.1", port: 0, mode: "submission" },
      { address: "127.0.0.1", port: 0, mode: "submissions" },
    ],
    tls: { cert: setup.tls.cert, key: setup.tls.key },
    relay: { smarthost: { host: "127.0.0.1", port: setup.sinkPort, tls: "none" } },
    delivery: { maildir: join(mailRoot, "{domain}/{localpart}") },
    // As configured for Postfix: no per-client connection cap, no per-user send quota (the bench
    // is one client and one sender). Everything else, fsync and logging included, stays default.
    limits: { connections: { total: 20_000, perIp: 20_000 } },
    sendLimits: { messagesPerHour: 0, recipientsPerHour: 0 },
    // One process unless this contender is the workers one (the default would be one per core).
    ...(workersSupported() ? { process: { workers } } : {}),
    ...extra,
  };
  const configPath = join(setup.workDir, "postern.yaml");
  writeFileSync(configPath, stringify(config));
  const signing = dkim ? dkimKeys(config) : undefined;

  const store = new SqliteUserStore({ path: join(dataDir, "users.sqlite"), hostname: config.hostname });
  for (const u of [...setup.users, { address: LOCAL_RECIPIENT, password: "inbox-password-not-used" }]) {
    await store.addUser(u.address, u.password);
  }
  store.close();

  const logPath = join(setup.workDir, "postern.log");
  const logFd = openSync(logPath, "w");
  const child: ChildProcess = spawn(process.execPath, [...nodeFlags(setup.workDir, name), join(root, "bin/postern.js"), "serve", "--config", configPath], {
    cwd: setup.workDir,
    stdio: ["ignore", logFd, "inherit"],
  });
  closeSync(logFd);
  // A server that never listens must not outlive the run (the bench would wait for it forever).
  const ports = await listeningPorts(child, logPath).catch((err: unknown) => {
    child.kill("SIGKILL");
    throw err;
  });
  return {
    name,
    submissionPort: ports.submission!,
    implicitPort: ports.submissions,
    pids: () => [child.pid!],
    local: { recipient: LOCAL_RECIPIENT, delivered: () => countMaildirNew(mailRoot) },
    signsDkim: dkim,
    work: "fsync before 250 (data, envelope, directory), relays after (smarthost = the sink)",
    cores: workers > 1 ? "all" : undefined,
    passwordScheme: "scrypt N=2^15 r=8 p=1, verified-credentials cache 60 s",
    notes: [
      workers > 1 ? `${workers} worker processes` : "one Node process",
      "fsync on: data, envelope, directories (group commit)",
      "log level info, JSON lines to a file",
      ...(signing ? [`DKIM signing for ${LOCAL_DOMAIN}: ${signing}`] : []),
    ],
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** POSTERN_BENCH_CONFIG: JSON merged over the generated config (to try a setting without editing code). */
function extraConfig(): Record<string, unknown> {
  return JSON.parse(process.env.POSTERN_BENCH_CONFIG ?? "{}") as Record<string, unknown>;
}

/**
 * The baseline's config: POSTERN_BENCH_CONFIG with POSTERN_BENCH_BASELINE_CONFIG on top, so
 * `--baseline .` measures a setting (e.g. `{"queue":{"fsync":false}}`) against this build in the
 * same rounds.
 */
function baselineConfig(): Record<string, unknown> {
  return { ...extraConfig(), ...(JSON.parse(process.env.POSTERN_BENCH_BASELINE_CONFIG ?? "{}") as Record<string, unknown>) };
}

/**
 * `--profile` (run.ts sets POSTERN_BENCH_PROFILE to a folder under bench/results/) or
 * `POSTERN_BENCH_PROFILE=1` (the work folder) runs the server under `node --cpu-prof`; the
 * .cpuprofile is written when the server exits at the end of the run.
 */
function nodeFlags(workDir: string, name: string): string[] {
  const where = process.env.POSTERN_BENCH_PROFILE;
  if (!where) return [];
  const dir = where === "1" ? join(workDir, "profile") : join(where, name.replace(/\W+/g, "-").replace(/-$/, ""));
  return ["--cpu-prof", `--cpu-prof-dir=${dir}`];
}

/** Reads the log file until every listener announced its port (the log is a file: polled). */
async function listeningPorts(child: ChildProcess, logPath: string): Promise<Record<string, number>> {
  const until = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`postern exited (${child.exitCode}); see ${logPath}`);
    const ports: Record<string, number> = {};
    for (const line of readFileSync(logPath, "utf8").split("\n")) {
      if (!line.includes('"listening"')) continue;
      const rec = JSON.parse(line) as { mode: string; port: number };
      ports[rec.mode] = rec.port;
    }
    if (ports.submission && ports.submissions) return ports;
    if (Date.now() > until) throw new Error(`postern did not start listening; see ${logPath}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Keys for the sender's domain from the key store, as `postern dkim keygen` makes them: Ed25519 and RSA-2048 (dual signing). */
function dkimKeys(config: { dataDir: string }): string {
  const keysDir = dkimKeysDir(config);
  for (const algorithm of ["ed25519", "rsa"] as const) generateKey(keysDir, LOCAL_DOMAIN, `bench-${algorithm}`, algorithm, { state: "active" });
  return "Ed25519 + RSA-2048";
}
