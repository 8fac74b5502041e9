/**
 * The crash test (DESIGN principle 3, SECURITY rule 16): concurrent clients submit in a loop while
 * the real server is killed with SIGKILL several times at random points and restarted. Afterwards
 * every message acknowledged with 250 has reached the smarthost sink (at least once), and nothing
 * reached it that was refused or never fully sent. Messages whose final reply was lost to a kill
 * may go either way (RFC 5321 §6.1); duplicates are counted and reported.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startPostern } from "./helpers/postern.js";
import { RawSmtp } from "./helpers/raw-smtp.js";
import { startSink } from "../delivery/helpers/sink.js";

const CLIENTS = 6;
const KILLS = 4;

interface Ledger {
  /** Answered 250 after the final dot. */
  acked: Set<string>;
  /** Answered 4xx/5xx after the final dot (must never be delivered). */
  refused: Set<string>;
  /** The final dot was sent but the reply was lost to the kill. */
  unknown: Set<string>;
}

test("SIGKILL at random points under load: every acknowledged message is delivered, nothing unacknowledged is", { timeout: 60_000 }, async (t) => {
  const sink = await startSink();
  const server = await startPostern({
    config: { relay: { smarthost: `127.0.0.1:${sink.port}` }, mynetworks: ["127.0.0.1/32"] },
  });
  const ledger: Ledger = { acked: new Set(), refused: new Set(), unknown: new Set() };
  let up: Promise<void> = Promise.resolve();
  let stopping = false;
  let ackWaiters: { n: number; resolve: () => void }[] = [];
  const onAck = (token: string) => {
    ledger.acked.add(token);
    ackWaiters = ackWaiters.filter((w) => (ledger.acked.size >= w.n ? (w.resolve(), false) : true));
  };
  const acksReach = (n: number) => new Promise<void>((resolve) => (ledger.acked.size >= n ? resolve() : ackWaiters.push({ n, resolve })));

  /** One client: a connection that sends message after message; reconnects after each kill. */
  const client = async (c: number) => {
    let n = 0;
    while (!stopping) {
      await up;
      let conn: RawSmtp;
      try {
        conn = await RawSmtp.open(server.ports.mta);
      } catch {
        await up; // refused: the server is down; wait for the restart
        continue;
      }
      let token: string | undefined;
      let dotSent = false;
      try {
        if ((await conn.reply()).code !== 220) throw new Error("no greeting");
        await conn.expect("EHLO load.test", 250);
        while (!stopping) {
          token = `crash-${c}-${n++}`;
          dotSent = false;
          await conn.expect("MAIL FROM:<load@example.org>", 250);
          await conn.expect(`RCPT TO:<sink-${c}@elsewhere.test>`, 250);
          await conn.expect("DATA", 354);
          dotSent = true;
          const r = await conn.cmd(`Message-ID: <${token}@load.test>\r\nSubject: ${token}\r\n\r\npayload ${token}\r\n.`);
          (r.code === 250 ? onAck : (x: string) => ledger.refused.add(x))(token);
          token = undefined;
        }
        await conn.cmd("QUIT").catch(() => undefined);
      } catch {
        // Killed mid-transaction: only a message whose dot went out may have been committed.
        if (token && dotSent) ledger.unknown.add(token);
      } finally {
        conn.close();
      }
    }
  };

  const started = Date.now();
  const clients = Array.from({ length: CLIENTS }, (_, i) => client(i));
  try {
    for (let k = 0; k < KILLS; k++) {
      // A random point: after a random number of further acknowledgements.
      await acksReach(ledger.acked.size + 5 + Math.floor(Math.random() * 25));
      let markUp!: () => void;
      up = new Promise((resolve) => (markUp = resolve));
      await server.stop("SIGKILL");
      await server.restart();
      markUp();
    }
    await acksReach(ledger.acked.size + 10);
    stopping = true;
    await Promise.all(clients);

    // Wait (on the sink's events) until every acknowledged message has arrived.
    const tokenOf = (data: Buffer) => /Message-ID: <(crash-\d+-\d+)@load\.test>/.exec(data.toString())?.[1] ?? "?";
    const deadline = Date.now() + 20_000;
    const missing = () => {
      const seen = new Set(sink.messages.map((m) => tokenOf(m.data)));
      return [...ledger.acked].filter((x) => !seen.has(x));
    };
    while (missing().length > 0 && Date.now() < deadline) {
      await sink.waitForMessages(sink.messages.length + 1, deadline - Date.now()).catch(() => undefined);
    }

    const delivered = sink.messages.map((m) => tokenOf(m.data));
    const counts = new Map<string, number>();
    for (const x of delivered) counts.set(x, (counts.get(x) ?? 0) + 1);
    const duplicates = [...counts].filter(([, n]) => n > 1).length;
    const lostReplyDelivered = [...counts.keys()].filter((x) => ledger.unknown.has(x)).length;
    t.diagnostic(
      `${KILLS} kills in ${Date.now() - started} ms: ${ledger.acked.size} acknowledged, ${counts.size} distinct delivered, ` +
        `${duplicates} delivered more than once, ${ledger.unknown.size} replies lost to a kill (${lostReplyDelivered} of them delivered), ` +
        `${ledger.refused.size} refused`,
    );
    assert.ok(ledger.acked.size >= 40, "enough load to mean something");
    assert.deepEqual(missing(), [], "every acknowledged message was delivered");
    const unexpected = [...counts.keys()].filter((x) => !ledger.acked.has(x) && !ledger.unknown.has(x));
    assert.deepEqual(unexpected, [], "nothing delivered that was not (possibly) acknowledged");
    assert.deepEqual(
      [...counts.keys()].filter((x) => ledger.refused.has(x)),
      [],
      "nothing refused was delivered",
    );
  } finally {
    stopping = true;
    await server.cleanup();
    await sink.close();
  }
});
