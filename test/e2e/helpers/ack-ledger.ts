/**
 * The bookkeeping of the crash tests (crash, workers-crash, pg-cluster): what each message's final
 * reply was, a wait for a number of acknowledgements, a send loop on one connection, and the check
 * against what reached the sink. Messages whose final reply was lost to a kill may go either way
 * (RFC 5321 §6.1), so they are kept apart from the acknowledged and the refused.
 */
import { RawSmtp } from "./raw-smtp.js";
import type { Sink } from "../../delivery/helpers/sink.js";

export class AckLedger {
  /** Answered 250 after the final dot. */
  readonly acked = new Set<string>();
  /** Answered 4xx/5xx after the final dot (must never be delivered). */
  readonly refused = new Set<string>();
  /** The final dot was sent but the reply was lost to the kill. */
  readonly unknown = new Set<string>();
  private waiters: { n: number; resolve: () => void }[] = [];

  ack(token: string): void {
    this.acked.add(token);
    this.waiters = this.waiters.filter((w) => (this.acked.size >= w.n ? (w.resolve(), false) : true));
  }

  /**
   * Resolves once `n` messages are acknowledged. With `ms`, a stall rejects after that long with
   * `stalled()` in the message (what the clients last saw).
   */
  acksReach(n: number, ms?: number, stalled: () => string = () => ""): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.acked.size >= n) return resolve();
      if (ms === undefined) return void this.waiters.push({ n, resolve });
      const timer = setTimeout(() => reject(new Error(`stalled at ${this.acked.size} acknowledged (waiting for ${n}); ${stalled()}`)), ms);
      this.waiters.push({ n, resolve: () => (clearTimeout(timer), resolve()) });
    });
  }

  /**
   * Sends message after message on a connection past EHLO (and AUTH) while `more()` holds, and
   * records each final reply. A failure is rethrown after noting a message whose dot went out:
   * only that one may have been committed.
   */
  async sendLoop(
    conn: RawSmtp,
    m: { from: string; to: string; nextToken: () => string; data: (token: string) => string; more: () => boolean; onAck?: (token: string) => void },
  ): Promise<void> {
    let token: string | undefined;
    let dotSent = false;
    try {
      while (m.more()) {
        token = m.nextToken();
        dotSent = false;
        await conn.expect(`MAIL FROM:<${m.from}>`, 250);
        await conn.expect(`RCPT TO:<${m.to}>`, 250);
        await conn.expect("DATA", 354);
        dotSent = true;
        const r = await conn.cmd(`${m.data(token)}\r\n.`);
        if (r.code === 250) {
          this.ack(token);
          m.onAck?.(token);
        } else this.refused.add(token);
        token = undefined;
      }
    } catch (err) {
      if (token && dotSent) this.unknown.add(token);
      throw err;
    }
  }

  /**
   * Waits (on the sink's events, up to `ms`) until every acknowledged message has arrived, then
   * tallies the sink: copies per token, and what is missing, unexpected or refused yet delivered.
   */
  async delivered(sink: Sink, tokenOf: (data: Buffer) => string, ms: number) {
    const missing = () => {
      const seen = new Set(sink.messages.map((m) => tokenOf(m.data)));
      return [...this.acked].filter((x) => !seen.has(x));
    };
    const deadline = Date.now() + ms;
    while (missing().length > 0 && Date.now() < deadline) {
      await sink.waitForMessages(sink.messages.length + 1, deadline - Date.now()).catch(() => undefined);
    }
    const counts = new Map<string, number>();
    for (const m of sink.messages) counts.set(tokenOf(m.data), (counts.get(tokenOf(m.data)) ?? 0) + 1);
    const tokens = [...counts.keys()];
    return {
      counts,
      /** Tokens delivered more than once, with their copy counts. */
      duplicates: [...counts].filter(([, n]) => n > 1),
      missing: missing(),
      /** Delivered though neither acknowledged nor lost to a kill. */
      unexpected: tokens.filter((x) => !this.acked.has(x) && !this.unknown.has(x)),
      refusedDelivered: tokens.filter((x) => this.refused.has(x)),
      lostReplyDelivered: tokens.filter((x) => this.unknown.has(x)).length,
    };
  }
}

/**
 * One client of the single-server crash tests: connections to the MTA port that send message after
 * message (tokens `<prefix>-<c>-<n>` in the Message-ID) until `stopping()`; after a kill it waits
 * for `up()` (the restart) and reconnects.
 */
export async function runLoadClient(
  ledger: AckLedger,
  c: number,
  o: { port: () => number; up: () => Promise<void>; stopping: () => boolean; prefix: string },
): Promise<void> {
  let n = 0;
  while (!o.stopping()) {
    await o.up();
    let conn: RawSmtp;
    try {
      conn = await RawSmtp.open(o.port());
    } catch {
      await o.up(); // refused: the server is down; wait for the restart
      continue;
    }
    try {
      if ((await conn.reply()).code !== 220) throw new Error("no greeting");
      await conn.expect("EHLO load.test", 250);
      await ledger.sendLoop(conn, {
        from: "load@example.org",
        to: `sink-${c}@elsewhere.test`,
        nextToken: () => `${o.prefix}-${c}-${n++}`,
        data: (token) => `Message-ID: <${token}@load.test>\r\nSubject: ${token}\r\n\r\npayload ${token}\r\n`,
        more: () => !o.stopping(),
      });
      await conn.cmd("QUIT").catch(() => undefined);
    } catch {
      // Killed mid-transaction: the ledger noted a message whose dot went out.
    } finally {
      conn.close();
    }
  }
}

/** The token of a message sent by runLoadClient, from its Message-ID; "?" for anything else. */
export const loadTokenOf = (prefix: string) => (data: Buffer) =>
  new RegExp(`Message-ID: <(${prefix}-\\d+-\\d+)@load\\.test>`).exec(data.toString())?.[1] ?? "?";
