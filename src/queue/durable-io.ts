/**
 * The few file operations durability rests on (DESIGN principle 3): fdatasync of a file, fsync of
 * a directory — group-committed across concurrent callers — and a complete write. They run on
 * libuv's thread pool because they may wait for the disk.
 */
import { closeSync, fdatasync as fdatasyncCb, fsync as fsyncCb, openSync, write as writeCb, writeSync } from "node:fs";
import { promisify } from "node:util";

const fsyncFd = promisify(fsyncCb);
const writeFd = promisify(writeCb);

/** fdatasync(2): the file's data (and the size needed to read it back) is on disk. */
export const fdatasync: (fd: number) => Promise<void> = promisify(fdatasyncCb);

/** Writes all of `chunk` at the file's current position (write(2) may take less than asked). */
export async function writeFully(fd: number, chunk: Buffer): Promise<void> {
  let offset = 0;
  while (offset < chunk.length) offset += (await writeFd(fd, chunk, offset, chunk.length - offset)).bytesWritten;
}

/**
 * Writes a small file (an envelope) whole into `fd`, fdatasyncs it when `sync`, and closes it.
 * The write is synchronous: a few hundred bytes into the page cache cost less than a trip
 * through the thread pool.
 */
export async function writeSmallFile(fd: number, text: string, sync: boolean): Promise<void> {
  try {
    const bytes = Buffer.from(text);
    // A regular file takes a small write whole; a short count can only mean a full disk.
    if (writeSync(fd, bytes) !== bytes.length) throw Object.assign(new Error("short write"), { code: "ENOSPC" });
    if (sync) await fdatasync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsync a directory so the names created, renamed or removed in it survive a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fd = openSync(dir, "r");
  try {
    await fsyncFd(fd);
  } finally {
    closeSync(fd);
  }
}

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * Batches fsyncs of one directory. `sync()` resolves only after an fsync that *started after*
 * the call, so it covers every rename the caller did before calling. Waiters that arrive while
 * an fsync is running wait for the next one, which then serves all of them at once.
 */
export class DirSyncer {
  private waiters: Waiter[] = [];
  private running = false;
  private count = 0;

  constructor(
    readonly dir: string,
    private readonly enabled = true,
  ) {}

  /** Number of fsyncs actually issued (for tests and metrics). */
  get syncCount(): number {
    return this.count;
  }

  sync(): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    // Let every commit that reaches this point in the current turn join the first batch.
    await new Promise<void>((r) => setImmediate(r));
    while (this.waiters.length > 0) {
      const batch = this.waiters;
      this.waiters = [];
      this.count++;
      try {
        await fsyncDir(this.dir);
        for (const w of batch) w.resolve();
      } catch (err) {
        for (const w of batch) w.reject(err);
      }
    }
    this.running = false;
  }
}
