/**
 * Outbound session reuse and concurrency limits (Postfix: smtp_connection_cache_*,
 * default_destination_concurrency_limit, default_process_limit). A session that finished a
 * transaction waits idle for the next message to the same peer. After a completed transaction the
 * session is ready for the next MAIL (RFC 5321 §4.1.1.5 needs no RSET), so one idle only briefly is
 * reused at once — a peer that closed it meanwhile has been seen closing it; one idle longer is
 * probed with RSET first. Limits count sessions in use, per destination and in total.
 */
import { SmtpClientError, type SmtpClient } from "./smtp-client.js";

export interface SmtpPoolOptions {
  /** Sessions in use at once, all destinations together. */
  maxTotal: number;
  /** Sessions in use at once to one destination (a domain, or a smarthost). */
  maxPerDestination: number;
  /** An unused session is closed after this long; 0 turns reuse off. */
  idleTimeoutMs: number;
  /** A session is closed after this many messages. */
  maxMessagesPerSession: number;
  /** Reusing a session idle longer than this probes it with RSET first (default 1000 ms). */
  probeAfterIdleMs?: number;
}

interface Idle {
  client: SmtpClient;
  used: number;
  timer: NodeJS.Timeout;
  since: number;
}

/** A counting semaphore with a FIFO wait list. */
class Slots {
  private inUse = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}
  get active(): number {
    return this.inUse;
  }
  async acquire(): Promise<void> {
    if (this.inUse < this.max) {
      this.inUse++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  release(): void {
    const next = this.waiting.shift();
    if (next)
      next(); // the slot passes straight to the next waiter
    else this.inUse--;
  }
}

export class SmtpPool {
  private readonly total: Slots;
  private readonly perDestination = new Map<string, Slots>();
  private readonly idle = new Map<string, Idle[]>();
  /** Highest number of sessions in use at once, per destination and overall (for tests and metrics). */
  readonly peak = { total: 0, byDestination: new Map<string, number>() };
  private closed = false;

  constructor(private readonly opts: SmtpPoolOptions) {
    this.total = new Slots(opts.maxTotal);
  }

  /**
   * Runs `use` with a session to `sessionKey` (host, port, TLS and AUTH settings), within the
   * limits for `destination`. `use` returns whether the session is still fit for another message.
   */
  async withSession<T>(
    destination: string,
    sessionKey: string,
    connect: () => Promise<SmtpClient>,
    use: (client: SmtpClient) => Promise<{ value: T; reusable: boolean }>,
  ): Promise<T> {
    let slots = this.perDestination.get(destination);
    if (!slots) this.perDestination.set(destination, (slots = new Slots(this.opts.maxPerDestination)));
    await slots.acquire();
    await this.total.acquire();
    this.peak.total = Math.max(this.peak.total, this.total.active);
    this.peak.byDestination.set(destination, Math.max(this.peak.byDestination.get(destination) ?? 0, slots.active));
    try {
      let { client, used, proven } = await this.take(sessionKey, connect);
      let outcome: { value: T; reusable: boolean };
      const before = client.repliesReceived;
      try {
        outcome = await use(client);
      } catch (err) {
        client.close();
        // A session reused without a probe that died without answering anything (the peer closed
        // it as we took it) did nothing for this message: it goes again on a new session.
        const stale = err instanceof SmtpClientError && err.kind === "network" && client.repliesReceived === before;
        if (proven || !stale) throw err;
        ({ client, used } = { client: await connect(), used: 0 });
        try {
          outcome = await use(client);
        } catch (again) {
          client.close();
          throw again;
        }
      }
      this.putBack(sessionKey, client, used + 1, outcome.reusable);
      return outcome.value;
    } finally {
      this.total.release();
      slots.release();
    }
  }

  /** Closes every idle session (QUIT) and refuses to keep more. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.idle.values()].flat();
    this.idle.clear();
    await Promise.all(all.map((i) => (clearTimeout(i.timer), i.client.quit())));
  }

  private async take(key: string, connect: () => Promise<SmtpClient>): Promise<{ client: SmtpClient; used: number; proven: boolean }> {
    const list = this.idle.get(key) ?? [];
    while (list.length > 0) {
      const idle = list.pop()!;
      clearTimeout(idle.timer);
      if (!idle.client.usable) {
        idle.client.close();
        continue;
      }
      if (Date.now() - idle.since < (this.opts.probeAfterIdleMs ?? 1000)) return { client: idle.client, used: idle.used, proven: false };
      try {
        await idle.client.rset(); // the peer may have timed us out meanwhile
        return { client: idle.client, used: idle.used, proven: true };
      } catch {
        idle.client.close();
      }
    }
    return { client: await connect(), used: 0, proven: true };
  }

  private putBack(key: string, client: SmtpClient, used: number, reusable: boolean): void {
    // The client dropped the session itself (e.g. a 354 with no recipient accepted): nothing to QUIT.
    if (!client.usable) {
      client.close();
      return;
    }
    if (this.closed || !reusable || this.opts.idleTimeoutMs <= 0 || used >= this.opts.maxMessagesPerSession) {
      void client.quit();
      return;
    }
    const list = this.idle.get(key) ?? [];
    this.idle.set(key, list);
    const entry: Idle = {
      client,
      used,
      since: Date.now(),
      timer: setTimeout(() => {
        const i = list.indexOf(entry);
        if (i >= 0) list.splice(i, 1);
        void client.quit();
      }, this.opts.idleTimeoutMs),
    };
    entry.timer.unref();
    list.push(entry);
  }
}
