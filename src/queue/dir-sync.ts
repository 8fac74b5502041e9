/**
 * Directory fsync with group commit. A rename is durable only once its directory is fsync'd
 * (DESIGN principle 3); many concurrent commits can share one fsync as long as each waiter's
 * rename happened before the fsync started.
 */
import { open } from "node:fs/promises";

/** fsync a directory so the names created, renamed or removed in it survive a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
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
