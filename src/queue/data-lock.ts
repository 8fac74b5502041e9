/**
 * One process owns a data directory at a time (like Postfix's master.lock): `postern serve` for
 * its whole life, and any command that changes the spool without the server. Taken before the
 * spool is recovered, the queue runs or a socket is bound, so a refused second start has changed
 * nothing (issue 12: a second `serve` used to run recovery first and delete a message that the
 * running server was still receiving).
 *
 * The lock is flock(2) on `<dataDir>/postern.lock` (Node has no flock; `fs-ext` provides it):
 * the kernel drops it when the holder dies, even by SIGKILL, so there is no stale lock to detect,
 * no PID that could have been reused and no take-over race, unlike an O_EXCL PID file; and it is
 * not given up after a timeout like an mtime-refreshed lock (proper-lockfile), which a stalled
 * server would lose while still running. The file is never removed: unlinking a lock file lets
 * two processes lock two different inodes. The PID written into it only serves the message.
 */
import { appendFileSync, closeSync, constants, fstatSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";

const { flockSync } = createRequire(import.meta.url)("fs-ext") as { flockSync(fd: number, flags: "exnb" | "shnb" | "un"): void };

export const DATA_LOCK_NAME = "postern.lock";

/** Another process holds the data directory. */
export class DataDirBusyError extends Error {
  constructor(
    readonly dataDir: string,
    readonly lockPath: string,
    /** The holder's PID as it wrote it (informational: it is read, not trusted). */
    readonly holderPid: number | undefined,
  ) {
    super(
      `another postern${holderPid !== undefined ? ` (pid ${holderPid})` : ""} is already serving the data directory ${dataDir} ` + `(it holds ${lockPath})`,
    );
    this.name = "DataDirBusyError";
  }
}

export interface DataDirLock {
  readonly dataDir: string;
  readonly path: string;
  /** Gives the directory up (also happens when the process exits). Safe to call twice. */
  release(): void;
}

/**
 * Takes the data directory's lock without waiting, creating the directory (0700) if needed.
 * Throws DataDirBusyError when another process holds it.
 */
export function lockDataDir(dataDir: string): DataDirLock {
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, DATA_LOCK_NAME);
  // O_NOFOLLOW: root opens this file in a directory that the unprivileged user owns; a symlink
  // planted there must not make root truncate and write some other file. O_CLOEXEC is Node's
  // default, so child processes (openssl, getent) never inherit, and so never keep, the lock.
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600);
  try {
    const st = fstatSync(fd);
    // A hard link to another file would be truncated below: only our own plain file will do.
    if (!st.isFile() || st.nlink !== 1) throw new Error(`${path} is not a plain file (a link?); remove it and start again`);
    try {
      flockSync(fd, "exnb");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EAGAIN" && code !== "EWOULDBLOCK") throw err;
      throw new DataDirBusyError(dir, path, holderPid(path));
    }
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  let held = true;
  return {
    dataDir: dir,
    path,
    release() {
      if (!held) return;
      held = false;
      ftruncateSync(fd, 0); // no stale PID for the next reader; the lock itself goes with the fd
      closeSync(fd);
    },
  };
}

function holderPid(path: string): number | undefined {
  try {
    const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    let text: string;
    try {
      text = readFileSync(fd, "utf8").trim();
    } finally {
      closeSync(fd);
    }
    return /^\d{1,10}$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Workers (src/server/workers.ts) write to the spool without the data directory's lock, which the
 * primary holds. Each holds this one shared for its life, so a primary starting after a crash can
 * wait, before recovery, until the workers of the last one are gone: recovery removes what a
 * still-running worker is writing.
 */
export const WORKERS_LOCK_NAME = "workers.lock";

function openWorkersLock(dataDir: string, create = true): number {
  // O_APPEND: each worker's own descriptor starts at 0, so without it their pids overwrite each other.
  const flags = constants.O_RDWR | constants.O_APPEND | constants.O_NOFOLLOW | constants.O_NONBLOCK | (create ? constants.O_CREAT : 0);
  return openSync(join(resolve(dataDir), WORKERS_LOCK_NAME), flags, 0o600);
}

/** In a worker: held (shared) until the process ends; its pid is added to the file. */
export function holdWorkersLock(dataDir: string): void {
  const fd = openWorkersLock(dataDir);
  flockSync(fd, "shnb");
  appendFileSync(fd, `${process.pid}\n`);
}

/** Holders listed in the file that are still worker processes (checked in /proc, so a reused pid is left alone). */
function leftoverWorkers(fd: number): number[] {
  const pids = readFileSync(fd, "utf8")
    .split("\n")
    .filter((l) => /^\d{1,10}$/.test(l))
    .map(Number);
  return pids.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("worker-main");
    } catch {
      return false;
    }
  });
}

/**
 * Before recovery: resolves once no worker of an earlier server holds the workers' lock, false
 * after `timeoutMs`. `create`: make the file (a server with workers); else none there means none ran.
 */
export async function waitForOldWorkers(dataDir: string, timeoutMs: number, create: boolean): Promise<boolean> {
  let fd: number;
  try {
    fd = openWorkersLock(dataDir, create);
  } catch (err) {
    if (!create && (err as NodeJS.ErrnoException).code === "ENOENT") return true;
    throw err;
  }
  const started = Date.now();
  let killed = false;
  try {
    for (;;) {
      try {
        flockSync(fd, "exnb");
        ftruncateSync(fd, 0); // their pids; this server's workers add theirs
        return true;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "EAGAIN" && code !== "EWOULDBLOCK") throw err;
        if (Date.now() - started >= timeoutMs) return false;
        // A worker exits when its primary dies; one that has not within a second is stuck: end it.
        if (!killed && Date.now() - started >= 1000) {
          killed = true;
          for (const pid of leftoverWorkers(fd)) process.kill(pid, "SIGKILL");
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  } finally {
    closeSync(fd); // the exclusive lock (if taken) goes with it
  }
}
