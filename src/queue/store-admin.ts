/**
 * Queue changes made straight on a shared store (PostgreSQL), without a server on this machine:
 * `postern queue hold|release|delete|flush` from an admin host of a cluster. Every change holds
 * the message's lease, so it never races a node's delivery attempt (a message being attempted is
 * refused with "try again later", as the server's QueueAdmin does). A flush cannot start an
 * attempt here: it makes the pending recipients due now, and the nodes' polling picks them up.
 */
import { QueueNotFoundError, QueueReader, statusOf } from "./admin.js";
import type { QueueLease, QueueStore } from "./store.js";
import type { Envelope } from "./types.js";

export class StoreQueueAdmin extends QueueReader {
  constructor(
    spool: QueueStore,
    private readonly leaseMs = 60_000,
    now: () => number = Date.now,
  ) {
    super(spool, now);
  }

  private async leased<T>(id: string, fn: (env: Envelope, lease: QueueLease) => Promise<T>): Promise<T> {
    const lease = await this.spool.claim(id, this.leaseMs);
    if (!lease) throw new Error(`message ${id} is being worked on by a node; try again later`);
    try {
      return await fn(await this.read(id), lease);
    } finally {
      await lease.release();
    }
  }

  async hold(id: string): Promise<void> {
    await this.leased(id, async (env, lease) => {
      if (env.held) return;
      env.held = true;
      await this.spool.updateEnvelope(env, lease);
    });
  }

  async release(id: string): Promise<void> {
    await this.leased(id, async (env, lease) => {
      if (!env.held) return;
      delete env.held;
      await this.spool.updateEnvelope(env, lease);
    });
  }

  async delete(id: string): Promise<void> {
    await this.leased(id, (_env, lease) => this.spool.remove(id, lease));
  }

  /** Makes every pending recipient due now (one message, or all that are not held). */
  async flush(id?: string): Promise<{ flushed: number; held: string[] }> {
    const ids = id === undefined ? (await this.list()).map((e) => e.id) : [id];
    const held: string[] = [];
    let flushed = 0;
    for (const one of ids) {
      try {
        await this.leased(one, async (env, lease) => {
          if (env.held) {
            if (id !== undefined) throw new Error(`message ${one} is on hold; release it first`);
            held.push(one);
            return;
          }
          const at = new Date(this.now()).toISOString();
          for (const r of env.recipients) if (r.status === "pending") r.nextAttemptAt = at;
          await this.spool.updateEnvelope(env, lease);
          flushed++;
        });
      } catch (err) {
        // Gone meanwhile (delivered), or being attempted right now: nothing to hurry.
        if (id !== undefined || !(err instanceof QueueNotFoundError || /being worked on/.test(String(err)))) throw err;
      }
    }
    return { flushed, held };
  }

  /** Removes every deferred message (tried at least once, still pending, not held). */
  async deleteDeferred(): Promise<{ deleted: string[] }> {
    const deleted: string[] = [];
    for (const entry of await this.list()) {
      if (entry.status !== "deferred") continue;
      try {
        await this.leased(entry.id, async (env, lease) => {
          if (statusOf(env, false) !== "deferred") return;
          await this.spool.remove(entry.id, lease);
          deleted.push(entry.id);
        });
      } catch (err) {
        if (!(err instanceof QueueNotFoundError || /being worked on/.test(String(err)))) throw err;
      }
    }
    return { deleted };
  }
}
