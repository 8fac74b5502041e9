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
import { RawSmtp } from "./helpers/raw-smtp.js";
import { startSink } from "../delivery/helpers/sink.js";

const CLIENTS = 6;
/** Alternately the primary and one worker. */
const KILLS = 4;

test("SIGKILL of the primary or of a worker under load: every acknowledged message is delivered", { timeout: 60_000 }, async (t) => {
  const sink = await startSink();
  const server = await startPostern({
    config: { process: { workers: 2 }, relay: { smarthost: `127.0.0.1:${sink.port}` }, mynetworks: ["127.0.0.1/32"] },
  });
  const acked = new Set<string>();
  const refused = new Set<string>();
  const unknown = new Set<string>();
  let up: Promise<void> = Promise.resolve();
  let stopping = false;
  let ackWaiters: { n: number; resolve: () => void }[] = [];
  const onAck = (token: string) => {
    acked.add(token);
    ackWaiters = ackWaiters.filter((w) => (acked.size >= w.n ? (w.resolve(), false) : true));
  };
  const acksReach = (n: number) => new Promise<void>((resolve) => (acked.size >= n ? resolve() : ackWaiters.push({ n, resolve })));
  // Both workers of the primary whose lines begin at index `from` have logged worker-started: only then is the
  // newest such line of a worker number the pid of a live worker (a line can arrive after the primary's 250s).
  const workersUp = (from: number) => {
    const seen = new Set<unknown>();
    return server.waitForLog((l) => l.event === "worker-started" && server.logs.indexOf(l) >= from && seen.add(l.worker).size === 2, 20_000);
  };
  await workersUp(0);

  const client = async (c: number) => {
    let n = 0;
    while (!stopping) {
      await up;
      let conn: RawSmtp;
      try {
        conn = await RawSmtp.open(server.ports.mta);
      } catch {
        await up;
        continue;
      }
      let token: string | undefined;
      let dotSent = false;
      try {
        if ((await conn.reply()).code !== 220) throw new Error("no greeting");
        await conn.expect("EHLO load.test", 250);
        while (!stopping) {
          token = `wcrash-${c}-${n++}`;
          dotSent = false;
          await conn.expect("MAIL FROM:<load@example.org>", 250);
          await conn.expect(`RCPT TO:<sink-${c}@elsewhere.test>`, 250);
          await conn.expect("DATA", 354);
          dotSent = true;
          const r = await conn.cmd(`Message-ID: <${token}@load.test>\r\nSubject: ${token}\r\n\r\npayload ${token}\r\n.`);
          (r.code === 250 ? onAck : (x: string) => refused.add(x))(token);
          token = undefined;
        }
        await conn.cmd("QUIT").catch(() => undefined);
      } catch {
        if (token && dotSent) unknown.add(token);
      } finally {
        conn.close();
      }
    }
  };

  const started = Date.now();
  const clients = Array.from({ length: CLIENTS }, (_, i) => client(i));
  let workerKills = 0;
  try {
    for (let k = 0; k < KILLS; k++) {
      await acksReach(acked.size + 5 + Math.floor(Math.random() * 25));
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
    await acksReach(acked.size + 10);
    stopping = true;
    await Promise.all(clients);

    const tokenOf = (data: Buffer) => /Message-ID: <(wcrash-\d+-\d+)@load\.test>/.exec(data.toString())?.[1] ?? "?";
    const deadline = Date.now() + 20_000;
    const missing = () => {
      const seen = new Set(sink.messages.map((m) => tokenOf(m.data)));
      return [...acked].filter((x) => !seen.has(x));
    };
    while (missing().length > 0 && Date.now() < deadline) {
      await sink.waitForMessages(sink.messages.length + 1, deadline - Date.now()).catch(() => undefined);
    }
    const counts = new Map<string, number>();
    for (const m of sink.messages) counts.set(tokenOf(m.data), (counts.get(tokenOf(m.data)) ?? 0) + 1);
    const duplicates = [...counts].filter(([, n]) => n > 1).length;
    t.diagnostic(
      `${KILLS - workerKills} primary and ${workerKills} worker kills in ${Date.now() - started} ms: ${acked.size} acknowledged, ` +
        `${counts.size} distinct delivered, ${duplicates} more than once, ${unknown.size} replies lost, ${refused.size} refused`,
    );
    assert.equal(workerKills, 2);
    // A clean stop logs no worker-exited, and once it is done every line the server wrote has arrived.
    await server.stop();
    const exited = server.logs.filter((l) => l.event === "worker-exited");
    assert.equal(exited.length, workerKills, `only the killed workers exited: ${JSON.stringify(exited)}; stderr: ${server.stderr()}`);
    assert.ok(acked.size >= 40, "enough load to mean something");
    assert.deepEqual(missing(), [], "every acknowledged message was delivered");
    assert.deepEqual(
      [...counts.keys()].filter((x) => !acked.has(x) && !unknown.has(x)),
      [],
      "nothing delivered that was not (possibly) acknowledged",
    );
    assert.deepEqual(
      [...counts.keys()].filter((x) => refused.has(x)),
      [],
      "nothing refused was delivered",
    );
  } finally {
    stopping = true;
    await server.cleanup();
    await sink.close();
  }
});
