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
import { AckLedger } from "./helpers/ack-ledger.js";

const CLIENTS = 6;
const KILLS = 4;

test("SIGKILL at random points under load: every acknowledged message is delivered, nothing unacknowledged is", { timeout: 60_000 }, async (t) => {
  const sink = await startSink();
  const server = await startPostern({
    config: { relay: { smarthost: `127.0.0.1:${sink.port}` }, mynetworks: ["127.0.0.1/32"] },
  });
  const ledger = new AckLedger();
  let up: Promise<void> = Promise.resolve();
  let stopping = false;

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
      try {
        if ((await conn.reply()).code !== 220) throw new Error("no greeting");
        await conn.expect("EHLO load.test", 250);
        await ledger.sendLoop(conn, {
          from: "load@example.org",
          to: `sink-${c}@elsewhere.test`,
          nextToken: () => `crash-${c}-${n++}`,
          data: (token) => `Message-ID: <${token}@load.test>\r\nSubject: ${token}\r\n\r\npayload ${token}\r\n`,
          more: () => !stopping,
        });
        await conn.cmd("QUIT").catch(() => undefined);
      } catch {
        // Killed mid-transaction: the ledger noted a message whose dot went out.
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
      await ledger.acksReach(ledger.acked.size + 5 + Math.floor(Math.random() * 25));
      let markUp!: () => void;
      up = new Promise((resolve) => (markUp = resolve));
      await server.stop("SIGKILL");
      await server.restart();
      markUp();
    }
    await ledger.acksReach(ledger.acked.size + 10);
    stopping = true;
    await Promise.all(clients);

    // Wait (on the sink's events) until every acknowledged message has arrived.
    const tokenOf = (data: Buffer) => /Message-ID: <(crash-\d+-\d+)@load\.test>/.exec(data.toString())?.[1] ?? "?";
    const { counts, duplicates, missing, unexpected, refusedDelivered, lostReplyDelivered } = await ledger.delivered(sink, tokenOf, 20_000);
    t.diagnostic(
      `${KILLS} kills in ${Date.now() - started} ms: ${ledger.acked.size} acknowledged, ${counts.size} distinct delivered, ` +
        `${duplicates.length} delivered more than once, ${ledger.unknown.size} replies lost to a kill (${lostReplyDelivered} of them delivered), ` +
        `${ledger.refused.size} refused`,
    );
    assert.ok(ledger.acked.size >= 40, "enough load to mean something");
    assert.deepEqual(missing, [], "every acknowledged message was delivered");
    assert.deepEqual(unexpected, [], "nothing delivered that was not (possibly) acknowledged");
    assert.deepEqual(refusedDelivered, [], "nothing refused was delivered");
  } finally {
    stopping = true;
    await server.cleanup();
    await sink.close();
  }
});
