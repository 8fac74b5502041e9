/**
 * The QueueStore contract against PgQueueStore on a real, throwaway PostgreSQL: write and commit,
 * list/read/stream, leases between two "nodes" (two stores, two pools on one database), lease
 * expiry and takeover, LeaseLostError, claimDue with SKIP LOCKED, and a crash before COMMIT.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { buffer } from "node:stream/consumers";
import pg from "pg";
import { migrate } from "../../src/store/pg/migrations.js";
import { PgPool, statement } from "../../src/store/pg/pool.js";
import { CHUNK_BYTES, PgQueueStore } from "../../src/store/pg/queue.js";
import { LeaseLostError } from "../../src/queue/store.js";
import { QueueRunner } from "../../src/queue/scheduler.js";
import { DsnNotifier } from "../../src/queue/bounce.js";
import type { Envelope, EnvelopeRecipient, RecipientResult } from "../../src/queue/types.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { memoryLogger, newEnvelope } from "../queue/helpers.js";

let db: TestPostgres;
const pools: PgPool[] = [];
const stores: PgQueueStore[] = [];

before(async () => {
  db = await startPostgres();
});
after(async () => {
  for (const s of stores) await s.close().catch(() => undefined);
  for (const p of pools) await p.end().catch(() => undefined);
  await db?.stop();
});

/** A fresh database per test, and `nodes` stores on it, each with its own pool (as nodes have). */
async function cluster(name: string, nodes = 1, renewEveryMs = 60_000): Promise<{ url: string; nodes: PgQueueStore[]; admin: PgPool }> {
  const url = await db.database(name);
  const admin = new PgPool({ url, poolSize: 2 });
  pools.push(admin);
  await migrate(admin);
  const made: PgQueueStore[] = [];
  for (let i = 0; i < nodes; i++) made.push(await node(url, `node${i}`, renewEveryMs));
  return { url, nodes: made, admin };
}

async function node(url: string, nodeName: string, renewEveryMs: number): Promise<PgQueueStore> {
  const pool = new PgPool({ url, poolSize: 4 });
  pools.push(pool);
  const store = new PgQueueStore(pool, { nodeName, renewEveryMs });
  await store.init();
  stores.push(store);
  return store;
}

async function commit(store: PgQueueStore, body: Buffer | string, recipients?: string[]): Promise<string> {
  const writer = await store.openWriter();
  await writer.write(Buffer.from(body));
  return writer.commit(newEnvelope(recipients));
}

const countChunks = statement("test_count_chunks", "SELECT count(*)::int AS n FROM queue_chunks");

test("commit stores the exact bytes and the envelope; list, has, readEnvelope and message() see them", async () => {
  const { nodes } = await cluster("basic");
  const [store] = nodes as [PgQueueStore];
  assert.deepEqual(await store.list(), []);
  const body = "Subject: hi\r\n\r\nhello\r\n";
  const id = await commit(store, body, ["a@example.org", "b@example.org"]);
  assert.deepEqual(await store.list(), [id]);
  assert.equal(await store.has(id), true);
  const env = await store.readEnvelope(id);
  assert.equal(env.id, id);
  assert.equal(env.size, Buffer.byteLength(body));
  assert.equal(env.sha256, createHash("sha256").update(body).digest("hex"));
  assert.deepEqual(
    env.recipients.map((r) => [r.address, r.status, r.attempts]),
    [
      ["a@example.org", "pending", 0],
      ["b@example.org", "pending", 0],
    ],
  );
  assert.equal((await buffer(store.message(env).open())).toString(), body);
  // headerPrefix goes on top, as with the file spool.
  const signed: Envelope = { ...env, headerPrefix: "DKIM-Signature: v=1\r\n" };
  const source = store.message(signed);
  assert.equal(source.size, env.size + 21);
  assert.equal((await buffer(source.open())).toString(), "DKIM-Signature: v=1\r\n" + body);
  const missing = "00000000000000000000";
  await assert.rejects(store.readEnvelope(missing), (err: NodeJS.ErrnoException) => err.code === "ENOENT");
  await assert.rejects(buffer(store.message({ ...env, id: missing }).open()), (err: NodeJS.ErrnoException) => err.code === "ENOENT");
  assert.equal(await store.has(missing), false);
});

test("a large message streams in chunk by chunk inside one transaction and streams out intact", async () => {
  const { nodes, admin } = await cluster("large", 2);
  const [a, b] = nodes as [PgQueueStore, PgQueueStore];
  const body = randomBytes(CHUNK_BYTES * 3 + 12345);
  const writer = await a.openWriter();
  for (let off = 0; off < body.length; off += 65536) await writer.write(body.subarray(off, off + 65536));
  // Chunks are in the database, but uncommitted: no other connection sees any of it.
  assert.equal((await admin.run<{ n: number }>(countChunks)).rows[0]!.n, 0);
  assert.deepEqual(await b.list(), []);
  const id = await writer.commit(newEnvelope());
  assert.equal((await admin.run<{ n: number }>(countChunks)).rows[0]!.n, 4);
  const env = await b.readEnvelope(id);
  assert.equal(env.size, body.length);
  const got = await buffer(b.message(env).open());
  assert.ok(got.equals(body), "the bytes read back on another node are the bytes written");
  await b.remove(id);
  assert.equal((await admin.run<{ n: number }>(countChunks)).rows[0]!.n, 0, "removal takes the chunks with it");
});

test("abort leaves nothing; a connection killed before COMMIT (a crashed node) leaves nothing", async () => {
  const { nodes, admin } = await cluster("crash");
  const [store] = nodes as [PgQueueStore];
  const small = await store.openWriter();
  await small.write(Buffer.from("x\r\n"));
  await small.abort();
  await small.abort();
  const big = await store.openWriter();
  await big.write(randomBytes(CHUNK_BYTES + 10));
  await big.abort();
  assert.deepEqual(await store.list(), []);
  assert.equal((await admin.run<{ n: number }>(countChunks)).rows[0]!.n, 0);

  const cut = await store.openWriter();
  await cut.write(randomBytes(CHUNK_BYTES * 2));
  // The node dies: its backend is terminated mid-transaction, as a lost connection would end it.
  await admin.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle in transaction' AND pid <> pg_backend_pid()");
  await assert.rejects(
    (async () => {
      await cut.write(randomBytes(CHUNK_BYTES));
      await cut.commit(newEnvelope());
    })(),
  );
  await cut.abort().catch(() => undefined);
  assert.deepEqual(await store.list(), []);
  assert.equal((await admin.run<{ n: number }>(countChunks)).rows[0]!.n, 0);
  // The store goes on working on the pool's other connections.
  const id = await commit(store, "after\r\n");
  assert.deepEqual(await store.list(), [id]);
});

test("leases across nodes: one holder; a change under a lost lease fails with LeaseLostError", async () => {
  const { nodes } = await cluster("leases", 2);
  const [a, b] = nodes as [PgQueueStore, PgQueueStore];
  const id = await commit(a, "m\r\n");
  const leaseA = await a.claim(id, 60_000);
  assert.ok(leaseA);
  assert.equal(await b.claim(id, 60_000), null, "held by node0");
  const env = await a.readEnvelope(id);
  env.recipients[0]!.attempts = 1;
  await a.updateEnvelope(env, leaseA);
  await leaseA.release();
  await leaseA.release(); // twice is fine

  const leaseB = await b.claim(id, 60_000);
  assert.ok(leaseB, "free again once released");
  await assert.rejects(a.updateEnvelope(env, leaseA), LeaseLostError);
  await assert.rejects(a.remove(id, leaseA), LeaseLostError);
  assert.equal(await a.has(id), true);
  await b.remove(id, leaseB);
  assert.equal(await a.has(id), false);
  // A claim on a message that is gone: reads find nothing (as with the file spool).
  const gone = await a.claim(id, 1000);
  assert.ok(gone);
  await assert.rejects(a.readEnvelope(id), (err: NodeJS.ErrnoException) => err.code === "ENOENT");
  await assert.rejects(a.updateEnvelope(env, gone), (err: NodeJS.ErrnoException) => err.code === "ENOENT");
});

test("a lease that expires (its holder died) is taken over; the old holder can no longer change the message", async () => {
  const { nodes } = await cluster("expiry", 2);
  const [a, b] = nodes as [PgQueueStore, PgQueueStore];
  const id = await commit(a, "m\r\n");
  // node0 "dies": never renews, never releases. The lease is long enough that the two checks below
  // run inside it even on a loaded machine; its expiry (the database's clock) is then polled for.
  const dead = await a.claim(id, 1500);
  assert.ok(dead);
  assert.equal(await b.claim(id, 60_000), null);
  assert.deepEqual(await b.claimDue(10, 60_000), [], "not due for takeover while the lease runs");
  let taken = await b.claimDue(10, 60_000);
  for (const deadline = Date.now() + 10_000; taken.length === 0 && Date.now() < deadline; ) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    taken = await b.claimDue(10, 60_000);
  }
  assert.deepEqual(
    taken.map((l) => l.id),
    [id],
  );
  const env = await a.readEnvelope(id);
  await assert.rejects(a.updateEnvelope(env, dead), LeaseLostError);
  await b.updateEnvelope(env, taken[0]);
});

test("held leases are renewed, so a long attempt keeps its message", async () => {
  const { nodes } = await cluster("renew", 2, 100);
  const [a, b] = nodes as [PgQueueStore, PgQueueStore];
  const id = await commit(a, "m\r\n");
  // Renewed every 100 ms, so only a stall of most of a second on a loaded machine could let it lapse.
  const lease = await a.claim(id, 1000);
  assert.ok(lease);
  await new Promise((resolve) => setTimeout(resolve, 2500));
  assert.equal(await b.claim(id, 60_000), null, "still node0's after more than twice the lease length");
  await a.updateEnvelope(await a.readEnvelope(id), lease);
  await lease.release();
  assert.ok(await b.claim(id, 60_000));
});

test("claimDue: nodes claiming at once get disjoint messages; held and not-yet-due ones are skipped", async () => {
  const { nodes } = await cluster("due", 3);
  const ids: string[] = [];
  for (let i = 0; i < 30; i++) ids.push(await commit(nodes[0]!, `m${i}\r\n`));
  // One held, one deferred into the future: neither is due.
  const [heldId, laterId] = ids.splice(0, 2) as [string, string];
  const held = await nodes[0]!.readEnvelope(heldId);
  held.held = true;
  await nodes[0]!.updateEnvelope(held);
  const later = await nodes[0]!.readEnvelope(laterId);
  later.recipients[0]!.attempts = 1;
  later.recipients[0]!.nextAttemptAt = new Date(Date.now() + 3600_000).toISOString();
  await nodes[0]!.updateEnvelope(later);

  const claimed = (await Promise.all(nodes.map((n) => n.claimDue(12, 60_000)))).flat().map((l) => l.id);
  assert.equal(new Set(claimed).size, claimed.length, "no message claimed twice");
  assert.deepEqual([...claimed].sort(), [...ids].sort(), "every due message claimed, nothing else");
});

test("runners on three nodes share the queue: each message delivered once, a dead node's claims taken over", async () => {
  const { url, nodes } = await cluster("runners", 2, 100);
  // The node that dies: it never renews (nor releases) what it claimed.
  nodes.push(await node(url, "dying", 3_600_000));
  const delivered: string[] = [];
  const deliver = async (env: Envelope, _m: unknown, rcpts: EnvelopeRecipient[]): Promise<RecipientResult[]> => {
    delivered.push(env.id);
    return rcpts.map((r) => ({ address: r.address, outcome: "delivered", detail: "250 ok" }));
  };
  // Node 2 claims five messages and dies holding them.
  const ids: string[] = [];
  for (let i = 0; i < 25; i++) ids.push(await commit(nodes[2]!, `m${i}\r\n`));
  const orphaned = await nodes[2]!.claimDue(5, 300);
  assert.equal(orphaned.length, 5);
  const runners = nodes.slice(0, 2).map((spool) => new QueueRunner({ spool, deliver, concurrency: 4, logger: memoryLogger(), pollMs: 50, leaseMs: 1500 }));
  try {
    for (const r of runners) await r.start();
    const deadline = Date.now() + 10_000;
    while ((await nodes[0]!.list()).length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(await nodes[0]!.list(), [], "all delivered and removed");
    assert.deepEqual([...delivered].sort(), [...ids].sort(), "each exactly once");
  } finally {
    for (const r of runners) await r.stop();
  }
});

test("a node's own enqueue is attempted at once, without waiting for the poll", async () => {
  const { nodes } = await cluster("wake", 1);
  const store = nodes[0]!;
  const delivered: string[] = [];
  let wake!: () => void;
  const arrived = new Promise<void>((resolve) => (wake = resolve));
  const runner = new QueueRunner({
    spool: store,
    deliver: async (env, _m, rcpts) => {
      delivered.push(env.id);
      wake();
      return rcpts.map((r) => ({ address: r.address, outcome: "delivered" as const, detail: "250 ok" }));
    },
    concurrency: 2,
    logger: memoryLogger(),
    pollMs: 3_600_000, // one poll at start, then none during the test
  });
  await runner.start();
  try {
    const started = Date.now();
    const id = await commit(store, "m\r\n");
    runner.enqueued(id);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("not attempted within 5 s")), 5000)));
    await Promise.race([arrived, late]).finally(() => clearTimeout(timer));
    assert.deepEqual(delivered, [id]);
    assert.ok(Date.now() - started < 2000, "attempted on enqueue, not on a poll");
  } finally {
    await runner.stop();
  }
});

test("bounces on a cluster: two nodes' runners, failed messages, exactly one report per message", async () => {
  const { nodes } = await cluster("bounces", 2, 100);
  const reports: string[] = [];
  const originals: string[] = [];
  const runners: QueueRunner[] = [];
  for (const spool of nodes) {
    let runner!: QueueRunner;
    const dsn = new DsnNotifier({
      spool,
      hostname: "mail.example.org",
      isLocalAddress: () => false,
      delayWarningSec: 0,
      maxLifetimeSec: 86400,
      enqueue: (id) => runner.enqueued(id),
      logger: memoryLogger(),
    });
    runner = new QueueRunner({
      spool,
      concurrency: 4,
      logger: memoryLogger(),
      pollMs: 20,
      leaseMs: 2000,
      onFinal: dsn.onFinal,
      deliver: async (env, _m, rcpts) => {
        if (env.dsnOf) reports.push(env.dsnOf);
        else originals.push(env.id);
        return rcpts.map((r) => ({
          address: r.address,
          outcome: env.dsnOf ? ("delivered" as const) : ("failed" as const),
          detail: env.dsnOf ? "250 ok" : "550 5.1.1 no such user",
        }));
      },
    });
    runners.push(runner);
  }
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) ids.push(await commit(nodes[i % 2]!, `Subject: ${i}\r\n\r\nbody\r\n`, [`nobody${i}@elsewhere.test`]));
  try {
    for (const r of runners) await r.start();
    const deadline = Date.now() + 10_000;
    while ((reports.length < ids.length || (await nodes[0]!.list()).length > 0) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual([...originals].sort(), [...ids].sort(), "each original attempted once");
    assert.deepEqual([...reports].sort(), [...ids].sort(), "one report per failed message, across both nodes");
    assert.deepEqual(await nodes[0]!.list(), []);
  } finally {
    for (const r of runners) await r.stop();
  }
});

/** A DsnNotifier on one node's store, reporting into that store. */
function notifier(spool: PgQueueStore): DsnNotifier {
  return new DsnNotifier({
    spool,
    hostname: "mail.example.org",
    isLocalAddress: () => false,
    delayWarningSec: 0,
    maxLifetimeSec: 86400,
    enqueue: () => undefined,
    logger: memoryLogger(),
  });
}

/** The envelope as a runner leaves it after a 550 for its one recipient. */
function failedEnvelope(env: Envelope): Envelope {
  const rcpt = env.recipients[0]!;
  Object.assign(rcpt, { status: "failed", attempts: 1, lastResult: "550 5.1.1 no such user" });
  return env;
}

const reportsOf = statement("test_reports_of", "SELECT id, held FROM queue_messages WHERE envelope->>'dsnOf' = $1 ORDER BY id");

test("bounces: a node overtaken while committing a report and the node that took over queue one report between them", async () => {
  const { url, nodes } = await cluster("bounce-race", 1);
  const taker = nodes[0]!;
  // The slow node: its report's commit waits until the other node has written its own.
  let writing!: () => void;
  const atCommit = new Promise<void>((resolve) => (writing = resolve));
  let proceed!: () => void;
  const gate = new Promise<void>((resolve) => (proceed = resolve));
  class StallingStore extends PgQueueStore {
    override async openWriter(id?: string) {
      const w = await super.openWriter(id);
      return {
        id: w.id,
        get bytesWritten() {
          return w.bytesWritten;
        },
        write: (chunk: Buffer) => w.write(chunk),
        abort: () => w.abort(),
        commit: async (e: Parameters<typeof w.commit>[0]) => {
          writing();
          await gate;
          return w.commit(e);
        },
      };
    }
  }
  const pool = new PgPool({ url, poolSize: 4 });
  pools.push(pool);
  const slow = new StallingStore(pool, { nodeName: "slow", renewEveryMs: 3_600_000 });
  await slow.init();
  stores.push(slow);

  const id = await commit(taker, "Subject: to nobody\r\n\r\nbody\r\n", ["nobody@elsewhere.test"]);
  // Long enough for the slow node to record its notice even on a loaded machine; then it lapses.
  const slowLease = (await slow.claim(id, 1500))!;
  const slowReport = notifier(slow).onFinal(failedEnvelope(await slow.readEnvelope(id)), undefined, slowLease);
  slowReport.catch(() => undefined);
  await atCommit; // the notice is recorded under the slow node's lease; its report is not committed
  // Its lease lapses (it does not renew); the other node takes the message over and reports.
  let takerLease = await taker.claim(id, 60_000);
  while (!takerLease) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    takerLease = await taker.claim(id, 60_000);
  }
  await notifier(taker).onFinal(failedEnvelope(await taker.readEnvelope(id)), undefined, takerLease);
  proceed();
  await assert.rejects(slowReport, "the late commit collides with the report under the same id");
  const reports = (await taker.db.run<{ id: string; held: boolean }>(reportsOf, [id])).rows;
  assert.equal(reports.length, 1, "one report for the message in the whole cluster");
  assert.equal(reports[0]!.held, false, "released once the original recorded it");
  assert.deepEqual((await taker.readEnvelope(id)).notices?.final, { id: reports[0]!.id, injected: true });
  await takerLease.release();
});

test("bounces: a report stays held until its original records it, so a takeover cannot find it delivered and write it again", async () => {
  const { nodes } = await cluster("bounce-held", 2);
  const [dying, taker] = nodes as [PgQueueStore, PgQueueStore];
  const id = await commit(dying, "Subject: to nobody\r\n\r\nbody\r\n", ["nobody@elsewhere.test"]);
  // The dying node commits its report, then dies before marking it sent (its update fails).
  // Long enough for the checks below to run inside it on a loaded machine; the taker then polls for its end.
  const lease = (await dying.claim(id, 1500))!;
  let updates = 0;
  const update = dying.updateEnvelope.bind(dying);
  dying.updateEnvelope = async (env, l) => {
    if (++updates === 2) throw new Error("killed before marking the report sent");
    return update(env, l);
  };
  await assert.rejects(notifier(dying).onFinal(failedEnvelope(await dying.readEnvelope(id)), undefined, lease), /killed/);
  dying.updateEnvelope = update;
  const [report] = (await taker.db.run<{ id: string; held: boolean }>(reportsOf, [id])).rows;
  assert.equal(report?.held, true, "committed, held");
  assert.deepEqual(
    (await taker.claimDue(10, 60_000)).map((l) => l.id),
    [],
    "no node delivers the report meanwhile (and the original's lease has not lapsed yet)",
  );
  let takerLease = await taker.claim(id, 60_000);
  while (!takerLease) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    takerLease = await taker.claim(id, 60_000);
  }
  await notifier(taker).onFinal(failedEnvelope(await taker.readEnvelope(id)), undefined, takerLease);
  const after = (await taker.db.run<{ id: string; held: boolean }>(reportsOf, [id])).rows;
  assert.deepEqual(after, [{ id: report!.id, held: false }], "the same report, released; none written again");
  await takerLease.release();
});

test("synchronous_commit: a database default of off is pinned on in every session of the pool; remote_apply is kept", async () => {
  const url = await db.database("sync-commit");
  const admin = new PgPool({ url, poolSize: 1 });
  pools.push(admin);
  await admin.exec(`ALTER DATABASE "sync-commit" SET synchronous_commit = off`);
  const plain = new pg.Client({ connectionString: url });
  await plain.connect();
  try {
    assert.equal((await plain.query("SHOW synchronous_commit")).rows[0].synchronous_commit, "off", "the database's default, as a plain session sees it");
  } finally {
    await plain.end();
  }
  const pool = new PgPool({ url, poolSize: 3 });
  pools.push(pool);
  // Three sessions held at once: each its own connection.
  const clients = await Promise.all([0, 1, 2].map(() => pool.pool.connect()));
  try {
    for (const c of clients) assert.equal((await c.query("SHOW synchronous_commit")).rows[0].synchronous_commit, "on");
  } finally {
    for (const c of clients) c.release();
  }
  await new PgQueueStore(pool, { nodeName: "n" }).init();
  await admin.exec(`ALTER DATABASE "sync-commit" SET synchronous_commit = remote_apply`);
  const kept = new PgPool({ url, poolSize: 1 });
  pools.push(kept);
  assert.equal((await kept.pool.query("SHOW synchronous_commit")).rows[0].synchronous_commit, "remote_apply");
});
