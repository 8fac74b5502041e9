/**
 * The crash test (test/e2e/crash.test.ts) with process.workers: 2: clients submit in a loop while
 * now the primary (and with it the whole server) and now one worker is killed with SIGKILL. Every
 * message acknowledged with 250 reaches the sink: a worker's commit is durable before its 250, and
 * what it committed but never reported to the primary is found in the spool (the replacement's
 * rescan, or recovery at the next start). Nothing refused or never fully sent is delivered.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startPostern } from "./helpers/postern.js";
import { startSink } from "../delivery/helpers/sink.js";
import { AckLedger, loadTokenOf, runLoadClient } from "./helpers/ack-ledger.js";

const CLIENTS = 6;
/** Alternately the primary and one worker. */
const KILLS = 4;

test("SIGKILL of the primary or of a worker under load: every acknowledged message is delivered", { timeout: 60_000 }, async (t) => {
  const sink = await startSink();
  const server = await startPostern({
    config: { process: { workers: 2 }, relay: { smarthost: `127.0.0.1:${sink.port}` }, mynetworks: ["127.0.0.1/32"] },
  });
  const ledger = new AckLedger();
  let up: Promise<void> = Promise.resolve();
  let stopping = false;
  // Both workers of the primary whose lines begin at index `from` have logged worker-started: only then is the
  // newest such line of a worker number the pid of a live worker (a line can arrive after the primary's 250s).
  const workersUp = (from: number) => {
    const seen = new Set<unknown>();
    return server.waitForLog((l) => l.event === "worker-started" && server.logs.indexOf(l) >= from && seen.add(l.worker).size === 2, 20_000);
  };
  await workersUp(0);

  const client = (c: number) => runLoadClient(ledger, c, { port: () => server.ports.mta, up: () => up, stopping: () => stopping, prefix: "wcrash" });

  const started = Date.now();
  const clients = Array.from({ length: CLIENTS }, (_, i) => client(i));
  let workerKills = 0;
  try {
    for (let k = 0; k < KILLS; k++) {
      await ledger.acksReach(ledger.acked.size + 5 + Math.floor(Math.random() * 25));
      if (k % 2 === 0) {
        let markUp!: () => void;
        up = new Promise((resolve) => (markUp = resolve));
        await server.stop("SIGKILL");
        const from = server.logs.length;
        await server.restart();
        await workersUp(from);
        markUp();
      } else {
        // The newest pid of a random worker number; the primary replaces it while others serve.
        const starts = server.logs.filter((l) => l.event === "worker-started");
        const n = 1 + Math.floor(Math.random() * 2);
        const victim = starts.filter((l) => l.worker === n).at(-1)!;
        assert.doesNotThrow(() => process.kill(victim.pid as number, 0), `worker pid ${victim.pid} is alive; stderr: ${server.stderr()}`);
        const from = server.logs.length;
        process.kill(victim.pid as number, "SIGKILL");
        await server.waitForLog((l) => l.event === "worker-started" && l.worker === victim.worker && server.logs.indexOf(l) >= from, 20_000);
        workerKills++;
      }
    }
    await ledger.acksReach(ledger.acked.size + 10);
    stopping = true;
    await Promise.all(clients);

    const tokenOf = loadTokenOf("wcrash");
    const { counts, duplicates, missing, unexpected, refusedDelivered } = await ledger.delivered(sink, tokenOf, 20_000);
    t.diagnostic(
      `${KILLS - workerKills} primary and ${workerKills} worker kills in ${Date.now() - started} ms: ${ledger.acked.size} acknowledged, ` +
        `${counts.size} distinct delivered, ${duplicates.length} more than once, ${ledger.unknown.size} replies lost, ${ledger.refused.size} refused`,
    );
    assert.equal(workerKills, 2);
    // A clean stop logs no worker-exited, and once it is done every line the server wrote has arrived.
    await server.stop();
    const exited = server.logs.filter((l) => l.event === "worker-exited");
    assert.equal(exited.length, workerKills, `only the killed workers exited: ${JSON.stringify(exited)}; stderr: ${server.stderr()}`);
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
