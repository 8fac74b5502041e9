import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter, once } from "node:events";
import { stat } from "node:fs/promises";
import { buffer } from "node:stream/consumers";
import { backoffSeconds, DEFAULT_RETRY_SCHEDULE, QueueRunner, type QueueRunnerOptions } from "../../src/queue/scheduler.js";
import { Spool } from "../../src/queue/spool.js";
import type { QueueStore } from "../../src/queue/store.js";
import type { DeliverFn, EnvelopeRecipient, RecipientResult } from "../../src/queue/types.js";
import { commitMessage, memoryLogger, tempDir } from "./helpers.js";

const T0 = Date.parse("2024-03-01T12:00:00Z");
const SEC = 1000;

/** A clock the test moves by hand: no sleeping. */
function fakeClock() {
  let t = T0;
  return { now: () => t, advance: (ms: number) => void (t += ms), set: (ms: number) => void (t = ms) };
}

interface Call {
  at: number;
  recipients: string[];
}

/** A deliverer answering from a script: `answer(address, attempt)` gives the outcome. */
function scriptedDeliver(clock: { now(): number }, answer: (address: string, attempt: number) => RecipientResult["outcome"]): DeliverFn & { calls: Call[] } {
  const calls: Call[] = [];
  const seen = new Map<string, number>();
  const fn = async (_env: unknown, _message: unknown, recipients: EnvelopeRecipient[]) => {
    calls.push({ at: clock.now(), recipients: recipients.map((r) => r.address) });
    return recipients.map((r) => {
      const n = (seen.get(r.address) ?? 0) + 1;
      seen.set(r.address, n);
      const outcome = answer(r.address, n);
      const detail = outcome === "delivered" ? "250 2.0.0 Ok" : outcome === "failed" ? "550 5.1.1 No such user" : "451 4.7.1 Try later";
      return { address: r.address, outcome, detail };
    });
  };
  return Object.assign(fn, { calls });
}

async function setup(deliverFactory: (clock: ReturnType<typeof fakeClock>) => DeliverFn, extra: Partial<QueueRunnerOptions> = {}) {
  const clock = fakeClock();
  const dir = await tempDir();
  const spool = new Spool(dir, { fsync: false, now: clock.now });
  await spool.init();
  const logger = memoryLogger();
  const deliver = deliverFactory(clock);
  const runner = new QueueRunner({ spool, deliver, concurrency: 4, logger, now: clock.now, ...extra });
  await runner.start();
  return { clock, dir, spool, logger, runner, deliver };
}

test("back-off doubles from firstRetrySec and is capped at maxBackoffSec", () => {
  const s = DEFAULT_RETRY_SCHEDULE;
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 50].map((n) => backoffSeconds(n, s)),
    [300, 600, 1200, 2400, 4000, 4000, 4000],
  );
  assert.equal(backoffSeconds(3, { firstRetrySec: 10, maxBackoffSec: 100_000, maxLifetimeSec: 1 }), 40);
});

test("4xx then success: deferred with the first back-off, then delivered and removed", async () => {
  let deliver!: ReturnType<typeof scriptedDeliver>;
  const { clock, spool, runner } = await setup((c) => (deliver = scriptedDeliver(c, (_a, n) => (n === 1 ? "deferred" : "delivered"))));
  const id = await commitMessage(spool, "hello\r\n");
  runner.enqueued(id);
  await runner.runDue();

  const env = await spool.readEnvelope(id);
  assert.equal(env.recipients[0].status, "pending");
  assert.equal(env.recipients[0].attempts, 1);
  assert.equal(env.recipients[0].lastResult, "451 4.7.1 Try later");
  assert.equal(env.recipients[0].nextAttemptAt, new Date(T0 + 300 * SEC).toISOString());
  assert.equal(runner.scheduled().get(id), T0 + 300 * SEC);

  clock.advance(299 * SEC);
  await runner.runDue();
  assert.equal(deliver.calls.length, 1, "not retried before its time");

  clock.advance(1 * SEC);
  await runner.runDue();
  assert.equal(deliver.calls.length, 2);
  assert.deepEqual(await spool.list(), []);
  await assert.rejects(stat(spool.messagePath(id)), { code: "ENOENT" });
  await runner.stop();
});

test("retries follow the back-off schedule exactly (injected clock)", async () => {
  let deliver!: ReturnType<typeof scriptedDeliver>;
  const { clock, spool, runner } = await setup((c) => (deliver = scriptedDeliver(c, () => "deferred")));
  const id = await commitMessage(spool, "x");
  runner.enqueued(id);
  await runner.runDue();
  for (let i = 0; i < 7; i++) {
    clock.set(runner.scheduled().get(id)!);
    await runner.runDue();
  }
  const gaps = deliver.calls.slice(1).map((c, i) => (c.at - deliver.calls[i].at) / SEC);
  assert.deepEqual(gaps, [300, 600, 1200, 2400, 4000, 4000, 4000]);
  assert.equal((await spool.readEnvelope(id)).recipients[0].attempts, 8);
  await runner.stop();
});

test("5xx fails the recipient, calls onFinal with the failures only, then removes the message", async () => {
  const finals: { id: string; failed: string[] }[] = [];
  const { spool, runner } = await setup((c) => scriptedDeliver(c, (address) => (address.startsWith("bad") ? "failed" : "delivered")), {
    onFinal: async (env, failed) => void finals.push({ id: env.id, failed: failed.map((f) => `${f.address} ${f.status} ${f.lastResult}`) }),
  });
  const id = await commitMessage(spool, "x", ["good@example.org", "bad@example.org"]);
  runner.enqueued(id);
  await runner.runDue();
  assert.deepEqual(finals, [{ id, failed: ["bad@example.org failed 550 5.1.1 No such user"] }]);
  assert.deepEqual(await spool.list(), []);
  await runner.stop();
});

test("delivered recipients are not retried: only the deferred one is", async () => {
  let deliver!: ReturnType<typeof scriptedDeliver>;
  const { clock, spool, runner } = await setup(
    (c) => (deliver = scriptedDeliver(c, (address, n) => (address.startsWith("slow") && n === 1 ? "deferred" : "delivered"))),
  );
  const id = await commitMessage(spool, "x", ["fast@example.org", "slow@example.org"]);
  runner.enqueued(id);
  await runner.runDue();
  clock.advance(300 * SEC);
  await runner.runDue();
  assert.deepEqual(
    deliver.calls.map((c) => c.recipients),
    [["fast@example.org", "slow@example.org"], ["slow@example.org"]],
  );
  assert.deepEqual(await spool.list(), []);
  await runner.stop();
});

test("lifetime expiry: the last retry is pulled in to the expiry time, then the recipient fails", async () => {
  let deliver!: ReturnType<typeof scriptedDeliver>;
  const finals: EnvelopeRecipient[][] = [];
  const { clock, spool, runner } = await setup((c) => (deliver = scriptedDeliver(c, () => "deferred")), {
    retrySchedule: { firstRetrySec: 300, maxBackoffSec: 4000, maxLifetimeSec: 3600 },
    onFinal: async (_env, failed) => void finals.push(failed),
  });
  const id = await commitMessage(spool, "x");
  runner.enqueued(id);
  await runner.runDue();
  while (runner.scheduled().has(id)) {
    clock.set(runner.scheduled().get(id)!);
    await runner.runDue();
  }
  assert.deepEqual(
    deliver.calls.map((c) => (c.at - T0) / SEC),
    [0, 300, 900, 2100, 3600],
  );
  assert.equal(finals.length, 1);
  assert.equal(finals[0][0].status, "failed");
  assert.match(finals[0][0].lastResult ?? "", /^expired after 5 attempts; last error: 451 4\.7\.1/);
  assert.deepEqual(await spool.list(), []);
  await runner.stop();
});

test("the queue survives a restart: a new Spool and QueueRunner over the same directory deliver what is pending", async () => {
  const clock = fakeClock();
  const dir = await tempDir();
  const logger = memoryLogger();
  const spool1 = new Spool(dir, { fsync: false, now: clock.now });
  await spool1.init();
  const first = scriptedDeliver(clock, (address) => (address.startsWith("a") ? "delivered" : "deferred"));
  const runner1 = new QueueRunner({ spool: spool1, deliver: first, concurrency: 2, logger, now: clock.now });
  await runner1.start();
  const id = await commitMessage(spool1, "x", ["a@example.org", "b@example.org"]);
  runner1.enqueued(id);
  await runner1.runDue();
  await runner1.stop();

  // "Restart": nothing shared but the directory.
  clock.advance(300 * SEC);
  const spool2 = new Spool(dir, { fsync: false, now: clock.now });
  const report = await spool2.init();
  assert.equal(report.queued, 1);
  const second = scriptedDeliver(clock, () => "delivered");
  const runner2 = new QueueRunner({ spool: spool2, deliver: second, concurrency: 2, logger, now: clock.now });
  await runner2.start();
  await runner2.runDue();
  assert.deepEqual(
    second.calls.map((c) => c.recipients),
    [["b@example.org"]],
  );
  assert.deepEqual(await spool2.list(), []);
  await runner2.stop();
});

test("a message whose recipients are all done when we start (crash before removal) is finished, not redelivered", async () => {
  const clock = fakeClock();
  const spool = new Spool(await tempDir(), { fsync: false, now: clock.now });
  await spool.init();
  const id = await commitMessage(spool, "x");
  const env = await spool.readEnvelope(id);
  env.recipients[0].status = "delivered";
  env.recipients[0].attempts = 1;
  await spool.updateEnvelope(env);
  const deliver = scriptedDeliver(clock, () => "delivered");
  const runner = new QueueRunner({ spool, deliver, concurrency: 1, logger: memoryLogger(), now: clock.now });
  await runner.start();
  await runner.runDue();
  assert.equal(deliver.calls.length, 0);
  assert.deepEqual(await spool.list(), []);
  await runner.stop();
});

test("one message is never attempted twice at once; concurrency bounds attempts in flight", async () => {
  const clock = fakeClock();
  const spool = new Spool(await tempDir(), { fsync: false, now: clock.now });
  await spool.init();
  const gates: (() => void)[] = [];
  const started = new EventEmitter();
  let inFlight = 0;
  let maxInFlight = 0;
  const perMessage = new Map<string, number>();
  const deliver: DeliverFn = async (env, _p, rcpts) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    perMessage.set(env.id, (perMessage.get(env.id) ?? 0) + 1);
    await new Promise<void>((resolve) => {
      gates.push(resolve);
      started.emit("gate");
    });
    inFlight--;
    return rcpts.map((r) => ({ address: r.address, outcome: "delivered" as const, detail: "250 ok" }));
  };
  const gatesWaiting = async (n: number) => {
    while (gates.length < n) await once(started, "gate");
  };
  const logger = memoryLogger();
  const runner = new QueueRunner({ spool, deliver, concurrency: 2, logger, now: clock.now });
  await runner.start();
  const ids = [await commitMessage(spool, "1"), await commitMessage(spool, "2"), await commitMessage(spool, "3")];
  for (const id of ids) runner.enqueued(id);
  await gatesWaiting(2);
  runner.enqueued(ids[0]); // again, while it is in flight
  const flushing = runner.flush();
  const done = runner.runDue();
  gates.shift()!();
  await gatesWaiting(2); // the third message took the free slot
  gates.shift()!();
  gates.shift()!();
  await Promise.all([done, flushing]);
  assert.equal(maxInFlight, 2);
  assert.deepEqual([...perMessage.values()], [1, 1, 1]);
  assert.deepEqual(await spool.list(), []);
  await runner.runDue();
  assert.deepEqual(runner.scheduled(), new Map(), "nothing left to revive a finished message");
  assert.deepEqual(
    logger.entries.filter((e) => e.level !== "info"),
    [],
  );
  await runner.stop();
});

test("a throwing deliverer defers every recipient; flush() retries before the back-off ends", async () => {
  const clock = fakeClock();
  const spool = new Spool(await tempDir(), { fsync: false, now: clock.now });
  await spool.init();
  let calls = 0;
  const deliver: DeliverFn = async (_env, _p, rcpts) => {
    if (++calls === 1) throw new Error("connect ECONNREFUSED 127.0.0.1:25");
    return rcpts.map((r) => ({ address: r.address, outcome: "delivered" as const, detail: "250 ok" }));
  };
  const runner = new QueueRunner({ spool, deliver, concurrency: 1, logger: memoryLogger(), now: clock.now });
  await runner.start();
  const id = await commitMessage(spool, "x", ["a@example.org", "b@example.org"]);
  runner.enqueued(id);
  await runner.runDue();
  const env = await spool.readEnvelope(id);
  assert.deepEqual(
    env.recipients.map((r) => r.lastResult),
    ["connect ECONNREFUSED 127.0.0.1:25", "connect ECONNREFUSED 127.0.0.1:25"],
  );
  await runner.flush();
  assert.equal(calls, 2);
  assert.deepEqual(await spool.list(), []);
  await runner.stop();
});

test("stop() waits for the attempt in flight and starts nothing new; start() picks the rest up", async () => {
  const clock = fakeClock();
  const spool = new Spool(await tempDir(), { fsync: false, now: clock.now });
  await spool.init();
  let release!: () => void;
  const started: string[] = [];
  const deliver: DeliverFn = async (env, _p, rcpts) => {
    started.push(env.id);
    if (started.length === 1) await new Promise<void>((r) => (release = r));
    return rcpts.map((r) => ({ address: r.address, outcome: "delivered" as const, detail: "250 ok" }));
  };
  const runner = new QueueRunner({ spool, deliver, concurrency: 1, logger: memoryLogger(), now: clock.now });
  await runner.start();
  const a = await commitMessage(spool, "a");
  const b = await commitMessage(spool, "b");
  runner.enqueued(a);
  runner.enqueued(b);
  while (started.length === 0) await new Promise<void>((r) => setImmediate(r));
  let stopped = false;
  const stopping = runner.stop().then(() => (stopped = true));
  await new Promise<void>((r) => setImmediate(r));
  assert.equal(stopped, false, "stop waits for the delivery in flight");
  release();
  await stopping;
  assert.deepEqual(started, [a]);
  assert.deepEqual(await spool.list(), [b]);

  await runner.start();
  await runner.runDue();
  assert.deepEqual(started, [a, b]);
  assert.deepEqual(await spool.list(), []);
  await runner.stop();
});

test("a failing onFinal keeps the message and retries the hook later", async () => {
  let hookCalls = 0;
  const { clock, spool, runner } = await setup((c) => scriptedDeliver(c, () => "failed"), {
    onFinal: async () => {
      if (++hookCalls === 1) throw new Error("bounce spool full");
    },
  });
  const id = await commitMessage(spool, "x");
  runner.enqueued(id);
  await runner.runDue();
  assert.deepEqual(await spool.list(), [id]);
  clock.advance(300 * SEC);
  await runner.runDue();
  assert.equal(hookCalls, 2);
  assert.deepEqual(await spool.list(), []);
  await runner.stop();
});

test("leases: an attempt runs under the store's lease and changes the envelope with it; a message leased elsewhere waits", async () => {
  const clock = fakeClock();
  const spool = new Spool(await tempDir(), { fsync: false, now: clock.now });
  await spool.init();
  const leasesSeen: (string | undefined)[] = [];
  // A store as a second node would see it: the file spool, with every lease and change recorded.
  const store: QueueStore = {
    openWriter: () => spool.openWriter(),
    list: () => spool.list(),
    readEnvelope: (id) => spool.readEnvelope(id),
    has: (id) => spool.has(id),
    claim: (id, ttl) => spool.claim(id, ttl),
    message: (env) => spool.message(env),
    updateEnvelope: (env, lease) => (leasesSeen.push(lease?.id), spool.updateEnvelope(env, lease)),
    remove: (id, lease) => (leasesSeen.push(lease?.id), spool.remove(id, lease)),
  };
  const delivered: string[] = [];
  const deliver: DeliverFn = async (env, message, rcpts) => {
    delivered.push((await buffer(message.open())).toString());
    assert.equal(await spool.claim(env.id, 1000), null, "the attempt holds the lease");
    return rcpts.map((r) => ({ address: r.address, outcome: r.address.startsWith("later") ? "deferred" : "delivered", detail: "x" }));
  };
  const runner = new QueueRunner({ spool: store, deliver, concurrency: 2, logger: memoryLogger(), now: clock.now, leaseMs: 60 * SEC });
  await runner.start();

  const id = await commitMessage(spool, "hello\r\n", ["later@example.org"]);
  runner.enqueued(id);
  await runner.runDue();
  assert.deepEqual(delivered, ["hello\r\n"]);
  assert.deepEqual(leasesSeen, [id], "the deferral was recorded under the attempt's lease");
  const probe = await spool.claim(id, 1000);
  assert.ok(probe, "released after the attempt");
  await probe.release();

  // Another holder has it (its lease still runs): no attempt, tried again later.
  const other = await commitMessage(spool, "other\r\n");
  const foreign = await spool.claim(other, 10 * 60 * SEC);
  runner.enqueued(other);
  await runner.runDue();
  assert.deepEqual(delivered, ["hello\r\n"]);
  assert.ok((runner.scheduled().get(other) ?? 0) > clock.now());
  await foreign!.release();
  await runner.flushOne(other);
  assert.deepEqual(delivered, ["hello\r\n", "other\r\n"]);
  assert.equal(await spool.has(other), false);

  // Admin changes go through exclusive() with a lease too.
  leasesSeen.length = 0;
  await runner.exclusive(id, async (lease) => {
    await store.updateEnvelope({ ...(await spool.readEnvelope(id)), held: true }, lease);
  });
  assert.deepEqual(leasesSeen, [id]);
  await runner.stop();
});
