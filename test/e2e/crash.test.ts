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
import { startSink } from "../delivery/helpers/sink.js";
import { AckLedger, loadTokenOf, runLoadClient } from "./helpers/ack-ledger.js";

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

  const client = (c: number) => runLoadClient(ledger, c, { port: () => server.ports.mta, up: () => up, stopping: () => stopping, prefix: "crash" });

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
    const tokenOf = loadTokenOf("crash");
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
