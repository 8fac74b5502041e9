/**
 * Haraka from npm, installed once into a cache folder under the system temp dir (`npm install
 * Haraka`), configured per run in the contender's folder: tls, auth/flat_file, queue/smtp_forward
 * to the bench sink. One process (no cluster), log level warn.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync, copyFileSync, openSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, run, waitForPort } from "./common.js";
import type { Contender, ContenderFactory, ContenderSetup } from "./types.js";

const INSTALL_DIR = join(tmpdir(), "postern-bench-haraka");
const HARAKA_BIN = join(INSTALL_DIR, "node_modules/Haraka/bin/haraka");

function defaultIni(name: string): string {
  return readFileSync(join(INSTALL_DIR, "node_modules/Haraka/config", name), "utf8");
}

/** Haraka relaying each message to the sink before its 250 (`queue/smtp_forward`). */
export const haraka: ContenderFactory = harakaContender("forward");

/**
 * Haraka at its fastest: `queue/discard` answers 250 and throws the message away (no queue, no
 * relay, no fsync) — the fair peer for raw SMTP + TLS + AUTH throughput.
 */
export const harakaDiscard: ContenderFactory = harakaContender("discard");

function harakaContender(queue: "forward" | "discard"): ContenderFactory {
  const name = `Haraka (${queue})`;
  return {
    name,
    prepare,
    start: (setup) => startHaraka(name, queue, setup),
  };
}

async function prepare(): Promise<string | null> {
  if (existsSync(HARAKA_BIN)) return null;
  mkdirSync(INSTALL_DIR, { recursive: true });
  if (!existsSync(join(INSTALL_DIR, "package.json"))) writeFileSync(join(INSTALL_DIR, "package.json"), '{"name":"haraka-bench","private":true}\n');
  const result = await run("npm", ["install", "--no-audit", "--no-fund", "Haraka"], { cwd: INSTALL_DIR, timeout: 300_000 }).catch((e: Error) => e);
  if (existsSync(HARAKA_BIN)) return null;
  return `npm install Haraka failed: ${result instanceof Error ? result.message.split("\n")[0] : "no bin/haraka"}`;
}

async function startHaraka(name: string, queue: "forward" | "discard", setup: ContenderSetup): Promise<Contender> {
  const dir = join(setup.workDir, "haraka");
  await run(process.execPath, [HARAKA_BIN, "-i", dir]);
  const cfg = join(dir, "config");
  const port = await freePort();
  writeFileSync(join(cfg, "smtp.ini"), `listen=127.0.0.1:${port}\ninactivity_timeout=300\n`);
  writeFileSync(join(cfg, "log.ini"), "[main]\nlevel=warn\ntimestamps=false\n");
  writeFileSync(join(cfg, "plugins"), `bench_nodelay\ntls\nauth/flat_file\n${queue === "forward" ? "queue/smtp_forward" : "queue/discard"}\n`);
  // At its best: Haraka leaves Nagle's algorithm on, so the second reply of a pipelined group
  // waits for the client's delayed ACK (~40 ms). One line of plugin turns it off, as Postern does.
  mkdirSync(join(dir, "plugins"), { recursive: true });
  writeFileSync(
    join(dir, "plugins/bench_nodelay.js"),
    "exports.hook_connect_init = (next, connection) => { connection.client.targetsocket?.setNoDelay?.(true); next(); };\n",
  );
  // Haraka generates missing DH parameters with `openssl dhparam 2048` in the background at
  // start — minutes of a core that would be charged to whatever runs meanwhile. Give it some.
  const dh = join(INSTALL_DIR, "dhparams.pem");
  if (!existsSync(dh)) await run("openssl", ["dhparam", "-dsaparam", "-out", dh, "2048"]);
  copyFileSync(dh, join(cfg, "dhparams.pem"));
  copyFileSync(setup.tls.key, join(cfg, "tls_key.pem"));
  copyFileSync(setup.tls.cert, join(cfg, "tls_cert.pem"));
  // Haraka reads a config file instead of its default, not on top of it: start from the default.
  writeFileSync(join(cfg, "tls.ini"), "key=tls_key.pem\ncert=tls_cert.pem\n" + defaultIni("tls.ini"));
  const users = setup.users.map((u) => `${u.address}=${u.password}`).join("\n");
  writeFileSync(join(cfg, "auth_flat_file.ini"), `[core]\nmethods=PLAIN,LOGIN\n\n[users]\n${users}\n`);
  const forward = defaultIni("smtp_forward.ini")
    .replace(/^host=.*$/m, "host=127.0.0.1")
    .replace(/^port=.*$/m, `port=${setup.sinkPort}`);
  writeFileSync(join(cfg, "smtp_forward.ini"), `enable_tls=false\nenable_outbound=true\n${forward}`);
  writeFileSync(join(cfg, "connection.ini"), defaultIni("connection.ini").replace(/^bytes=\d+$/m, "bytes=60000000"));
  const logFd = openSync(join(setup.workDir, "haraka.log"), "w");
  // Its own process group, so stop() also ends anything Haraka spawned.
  // queue/discard only discards when told to: this variable tells it to for every message.
  const env = queue === "discard" ? { ...process.env, YES_REALLY_DO_DISCARD: "1" } : process.env;
  const child: ChildProcess = spawn(process.execPath, [HARAKA_BIN, "-c", dir], { stdio: ["ignore", logFd, logFd], detached: true, env });
  closeSync(logFd);
  await waitForPort(port);
  return {
    name,
    submissionPort: port,
    pids: () => [child.pid!],
    passwordScheme: "auth/flat_file: clear-text passwords in an .ini file (no hashing)",
    work:
      queue === "forward"
        ? "relays: 250 only after the sink accepted (no local queue, no fsync)"
        : "discards: 250 and drop (no queue, no fsync, no relay) — discard: not verified at the sink",
    discards: queue === "discard",
    notes: [
      `Haraka ${JSON.parse(readFileSync(join(INSTALL_DIR, "node_modules/Haraka/package.json"), "utf8")).version as string}`,
      "one process (no cluster)",
      "Nagle off (a one-line connect_init plugin: setNoDelay)",
      queue === "forward" ? "queue/smtp_forward to the sink" : "queue/discard (YES_REALLY_DO_DISCARD=1)",
      "no Maildir delivery of its own (scenario 6 local half skipped)",
    ],
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      process.kill(-child.pid!, "SIGKILL");
      await exited;
    },
  };
}
