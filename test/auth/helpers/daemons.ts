/**
 * Real authentication daemons for tests, each in its own temp folder on unix sockets:
 * Dovecot (`dovecot -F` with a passwd-file passdb and an auth-client listener) and saslauthd
 * (`-a shadow` with a throw-away system user). `doveadm pw` makes the password hashes.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, watch } from "node:fs";
import { chmod, mkdtemp, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { connect } from "node:net";

/** `doveadm pw -s SCHEME -p PASSWORD` → "{SCHEME}…". */
export function doveadmPw(scheme: string, password: string): string {
  return execFileSync("doveadm", ["pw", "-s", scheme, "-p", password], { encoding: "utf8" }).trim();
}

/**
 * Resolves once a daemon accepts connections on the unix socket `path`. The file appears at bind(),
 * a moment before listen(): a connection in between is refused (ECONNREFUSED, seen under load), so
 * after the file shows up, connect until one is accepted.
 */
export async function waitForListener(path: string, timeoutMs = 10_000): Promise<void> {
  await waitForPath(path, timeoutMs);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const accepted = await new Promise<boolean>((resolve) => {
      const c = connect(path);
      c.once("connect", () => (c.destroy(), resolve(true)));
      c.once("error", () => resolve(false));
    });
    if (accepted) return;
    if (Date.now() > deadline) throw new Error(`nothing accepts connections on ${path}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves once `path` exists (fs.watch on its folder: no polling). */
export function waitForPath(path: string, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const watcher = watch(dirname(path), () => {
      if (existsSync(path)) done();
    });
    const timer = setTimeout(() => done(new Error(`${path} did not appear within ${timeoutMs} ms`)), timeoutMs);
    function done(err?: Error) {
      clearTimeout(timer);
      watcher.close();
      if (err) reject(err);
      else resolve();
    }
    if (existsSync(path)) done();
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((ok) => child.once("exit", () => ok()));
  child.kill("SIGTERM");
  await exited;
}

export interface Daemon {
  dir: string;
  /** The socket Postern talks to. */
  socket: string;
  stderr(): string;
  /** Resolves once the daemon's output so far contains `pattern` (checked as output arrives). */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Collects a child's output and lets tests await a pattern in it instead of sleeping. */
function outputOf(...streams: NodeJS.ReadableStream[]): Pick<Daemon, "stderr" | "waitForOutput"> {
  let text = "";
  const waiters = new Set<() => void>();
  for (const s of streams) {
    s.on("data", (d: Buffer) => {
      text += d.toString();
      for (const w of [...waiters]) w();
    });
  }
  return {
    stderr: () => text,
    waitForOutput: (pattern, timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => (waiters.delete(check), reject(new Error(`never printed ${pattern}; got:\n${text.slice(-500)}`))), timeoutMs);
        const check = () => {
          if (!pattern.test(text)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
        check();
      }),
  };
}

/** Dovecot's auth service alone; `users` are passwd-file lines. */
export async function startDovecot(users: string[]): Promise<Daemon & { usersPath: string }> {
  const dir = await mkdtemp(join(tmpdir(), "postern-dovecot-"));
  // Dovecot's auth process reads the passwd-file as the unprivileged `dovecot` user.
  await chmod(dir, 0o755);
  const run = join(dir, "run");
  await mkdir(run);
  const usersPath = join(dir, "users");
  await writeFile(usersPath, users.join("\n") + "\n");
  const conf = join(dir, "dovecot.conf");
  await writeFile(
    conf,
    [
      `base_dir = ${run}`,
      `state_dir = ${join(dir, "state")}`,
      "log_path = /dev/stderr",
      "protocols =",
      "ssl = no",
      "disable_plaintext_auth = yes",
      "auth_mechanisms = plain login scram-sha-256",
      "auth_failure_delay = 0",
      `passdb {\n  driver = passwd-file\n  args = ${usersPath}\n}`,
      "userdb {\n  driver = static\n  args = uid=65534 gid=65534 home=/nonexistent\n}",
      "service auth {\n  unix_listener auth-client {\n    mode = 0600\n  }\n}",
      "",
    ].join("\n"),
  );
  const child = spawn("dovecot", ["-F", "-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  const output = outputOf(child.stderr!);
  const socket = join(run, "auth-client");
  await waitForListener(socket);
  return {
    dir,
    socket,
    usersPath,
    ...output,
    async stop() {
      await stopChild(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A system user with a known password, for saslauthd -a shadow. Needs root (as `.ci/run` has). */
export function createSystemUser(password: string): { name: string; remove(): void } {
  const name = `pstn${randomBytes(3).toString("hex")}`;
  execFileSync("useradd", ["-M", "-s", "/usr/sbin/nologin", name]);
  execFileSync("chpasswd", [], { input: `${name}:${password}\n` });
  return { name, remove: () => execFileSync("userdel", [name]) };
}

export async function startSaslauthd(): Promise<Daemon> {
  const dir = await mkdtemp(join(tmpdir(), "postern-saslauthd-"));
  // detached: saslauthd signals its whole process group when it shuts down; that must not be us.
  const child = spawn("saslauthd", ["-a", "shadow", "-m", dir, "-n", "1", "-d"], { stdio: ["ignore", "pipe", "pipe"], detached: true });
  const output = outputOf(child.stderr!, child.stdout!);
  const socket = join(dir, "mux");
  await waitForListener(socket);
  return {
    dir,
    socket,
    ...output,
    async stop() {
      await stopChild(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
