/**
 * Several Postern nodes on one PostgreSQL (issue 19), one command: `node dist/bench/pg-nodes.js`.
 *
 *   1. Commit latency of one message, 4 KB and 1 MB: bytes in the database (PgQueueStore, one
 *      transaction, synchronous_commit on) against the file spool with fsync (what a shared
 *      filesystem would be at best: local disk, no network round trips).
 *   2. msgs/s with 1, 2 and 3 nodes on one throwaway PostgreSQL: plain SMTP from mynetworks,
 *      relayed to the bench sink (its own process), the same total number of client connections
 *      spread over the nodes; CPU per message of the nodes and of PostgreSQL (its process tree,
 *      /proc), and the database's share, so a bigger machine can be planned from it.
 *
 * Options: --seconds N (per node count, default 10), --connections N (default 12), --size BYTES
 * (default 4096), --nodes 0,1,2,3 (the node counts, in order; 0 is one node on the file spool, the
 * baseline). Prints a table and the JSON of every number.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startPostgres, type TestPostgres } from "../test/helpers/postgres.js";
import { startPostern, type Postern } from "../test/e2e/helpers/postern.js";
import { migrate } from "../src/store/pg/migrations.js";
import { PgPool } from "../src/store/pg/pool.js";
import { PgQueueStore } from "../src/store/pg/queue.js";
import { Spool } from "../src/queue/spool.js";
import type { NewEnvelope, SpoolWriter } from "../src/queue/types.js";
import { percentile, runLoad } from "./load.js";
import { treeCpuMs } from "./proc-tree.js";
import { startSinkProcess } from "./sink-process.js";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    connections: { type: "string", default: "12" },
    size: { type: "string", default: "4096" },
    nodes: { type: "string", default: "0,1,2,3" },
  },
});
const SECONDS = Number(args.seconds);
const CONNECTIONS = Number(args.connections);
const SIZE = Number(args.size);
/** Load average when a run starts: on a shared machine the numbers mean little when it is high. */
const load = () => readFileSync("/proc/loadavg", "latin1").split(" ")[0];

const envelope: NewEnvelope = {
  mailFrom: "bench@example.org",
  client: { ip: "127.0.0.1", helo: "bench.test", listener: "mta" },
  recipients: [{ address: "sink@elsewhere.test" }],
};

/** The postmaster of the throwaway server: the `postgres` process listening on its port. */
function postgresRoot(port: number): number {
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, "latin1").split("\0");
      if (argv[0]?.endsWith("/postgres") && argv.includes(String(port))) return Number(name);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no postgres process for port ${port}`);
}

async function timeCommits(open: () => Promise<SpoolWriter>, size: number, n: number): Promise<{ commitP50: number; commitP95: number; totalP50: number }> {
  const body = Buffer.alloc(size, "x");
  const commits: number[] = [];
  const totals: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const w = await open();
    for (let off = 0; off < size; off += 64 * 1024) await w.write(body.subarray(off, off + 64 * 1024));
    const t1 = performance.now();
    await w.commit(envelope);
    const t2 = performance.now();
    commits.push(t2 - t1);
    totals.push(t2 - t0);
  }
  const r = (x: number) => Math.round(x * 100) / 100;
  return { commitP50: r(percentile(commits, 50)), commitP95: r(percentile(commits, 95)), totalP50: r(percentile(totals, 50)) };
}

async function commitLatency(db: TestPostgres): Promise<Record<string, unknown>> {
  const pool = new PgPool({ url: await db.database("commits"), poolSize: 2 });
  await migrate(pool);
  const pgStore = new PgQueueStore(pool, { nodeName: "bench" });
  await pgStore.init();
  const dir = await mkdtemp(join(tmpdir(), "postern-bench-spool-"));
  const spool = new Spool(dir);
  await spool.init();
  try {
    return {
      postgres4k: await timeCommits(() => pgStore.openWriter(), 4096, 200),
      spool4k: await timeCommits(() => spool.openWriter(), 4096, 200),
      postgres1m: await timeCommits(() => pgStore.openWriter(), 1024 * 1024, 30),
      spool1m: await timeCommits(() => spool.openWriter(), 1024 * 1024, 30),
    };
  } finally {
    await pgStore.close();
    await pool.end();
    await spool.close();
    await rm(dir, { recursive: true, force: true });
  }
}

interface NodesResult {
  nodes: number;
  accepted: number;
  msgsPerSec: number;
  delivered: number;
  latencyP50Ms: number;
  nodeCpuMsPerMsg: number;
  postgresCpuMsPerMsg: number;
  postgresShare: number;
  loadAvgAtStart: string;
}

async function nodesRun(db: TestPostgres, n: number, sinkPort: number, sinkCount: () => Promise<number>): Promise<NodesResult> {
  // n = 0: one node on the file spool (store.backend sqlite), the baseline PostgreSQL is measured against.
  const url = await db.database(`nodes${n}`);
  const admin = new PgPool({ url, poolSize: 1 });
  await migrate(admin);
  await admin.end();
  const nodes: Postern[] = [];
  try {
    for (let i = 0; i < Math.max(n, 1); i++) {
      nodes.push(
        await startPostern({
          config: {
            relay: { smarthost: `127.0.0.1:${sinkPort}` },
            mynetworks: ["127.0.0.1/32"],
            log: { level: "info" },
            ...(n === 0 ? {} : { store: { backend: "postgres", url, poolSize: 10, nodeName: `node${i}` } }),
          },
        }),
      );
    }
    const pgRoot = postgresRoot(db.port);
    const loadAvgAtStart = load();
    const before = { nodes: treeCpuMs(nodes.map((p) => p.pid)), pg: treeCpuMs([pgRoot]), sink: await sinkCount() };
    const per = Math.max(1, Math.floor(CONNECTIONS / Math.max(n, 1)));
    const results = await Promise.all(
      nodes.map((p, i) =>
        runLoad({
          port: p.ports.mta,
          tls: "none",
          sessions: 1_000_000,
          concurrency: per,
          messagesPerSession: 50,
          messageSize: SIZE,
          pipelining: true,
          from: "bench@example.org",
          to: "sink@elsewhere.test",
          runId: `n${n}-${i}`,
          deadlineMs: SECONDS * 1000,
        }),
      ),
    );
    const accepted = results.reduce((s, r) => s + r.accepted, 0);
    // Delivery catches up: every accepted message reaches the sink before CPU is read.
    const until = Date.now() + 60_000;
    while ((await sinkCount()) - before.sink < accepted && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    const delivered = (await sinkCount()) - before.sink;
    const nodeCpu = treeCpuMs(nodes.map((p) => p.pid)) - before.nodes;
    const pgCpu = treeCpuMs([pgRoot]) - before.pg;
    const lat = results.map((r) => r.latencyMs.p50).filter((x) => Number.isFinite(x));
    return {
      nodes: n,
      accepted,
      msgsPerSec: Math.round(accepted / SECONDS),
      delivered,
      latencyP50Ms: Math.round((lat.reduce((a, b) => a + b, 0) / Math.max(lat.length, 1)) * 10) / 10,
      nodeCpuMsPerMsg: Math.round((nodeCpu / Math.max(accepted, 1)) * 100) / 100,
      postgresCpuMsPerMsg: Math.round((pgCpu / Math.max(accepted, 1)) * 100) / 100,
      postgresShare: Math.round((pgCpu / Math.max(nodeCpu + pgCpu, 1)) * 100) / 100,
      loadAvgAtStart,
    };
  } finally {
    for (const p of nodes) await p.cleanup();
  }
}

const db = await startPostgres();
const sink = await startSinkProcess({});
try {
  const commit = await commitLatency(db);
  console.log("commit latency (ms):", JSON.stringify(commit));
  const runs: NodesResult[] = [];
  for (const n of args.nodes.split(",").map(Number)) {
    const r = await nodesRun(db, n, sink.port, async () => (await sink.stats()).count);
    runs.push(r);
    console.log(
      `${n === 0 ? "file spool, 1 node" : `${n} node${n > 1 ? "s" : " "}`}: ${r.msgsPerSec} msgs/s (${r.accepted} accepted, ${r.delivered} delivered), p50 ${r.latencyP50Ms} ms, ` +
        `CPU/msg nodes ${r.nodeCpuMsPerMsg} ms + PostgreSQL ${r.postgresCpuMsPerMsg} ms (database ${Math.round(r.postgresShare * 100)} %), load average ${r.loadAvgAtStart}`,
    );
  }
  console.log(JSON.stringify({ seconds: SECONDS, connections: CONNECTIONS, size: SIZE, commit, runs }, null, 2));
} finally {
  await sink.stop();
  await db.stop();
}
