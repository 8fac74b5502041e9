/** Cluster-wide AUTH throttle and send limits on PostgreSQL: the in-memory rules, counted by several nodes at once. */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { AuthThrottle, DEFAULT_AUTH_THROTTLE, type AuthThrottlePort } from "../../src/policy/auth-throttle.js";
import { PgAuthThrottle, PgSendLimits } from "../../src/store/pg/counters.js";
import { migrate } from "../../src/store/pg/migrations.js";
import { PgPool, statement } from "../../src/store/pg/pool.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";

let db: TestPostgres;
let databases = 0;
const pools: PgPool[] = [];
before(async () => {
  db = await startPostgres();
});
after(async () => {
  await Promise.all(pools.map((p) => p.end()));
  await db?.stop();
});

/** `n` nodes' pools on one fresh, migrated database. */
async function nodes(n: number): Promise<PgPool[]> {
  const url = await db.database(`counters_${++databases}`);
  const mine = Array.from({ length: n }, () => new PgPool({ url, poolSize: 4 }));
  pools.push(...mine);
  await migrate(mine[0]!);
  return mine;
}

const CONFIG = { ...DEFAULT_AUTH_THROTTLE, ipFailures: 10, accountFailures: 5, penaltyBaseMs: 100, maxPenaltyMs: 1000 };

/** The same sequence against the in-memory throttle and the PostgreSQL one gives the same answers. */
async function sequence(throttle: AuthThrottlePort) {
  const out: unknown[] = [];
  for (let i = 0; i < 6; i++) out.push(await throttle.failed("192.0.2.7", "tim@example.org"));
  out.push(await throttle.checkAccount("192.0.2.99", "TIM@example.org"), await throttle.checkAccount("198.51.100.1", "tim@example.org"));
  out.push(await throttle.checkIp("192.0.2.7"));
  for (let i = 0; i < 4; i++) out.push(await throttle.failed("192.0.2.7", "ann@example.org"));
  out.push(await throttle.checkIp("192.0.2.7"), await throttle.checkIp("192.0.2.8"));
  await throttle.succeeded("192.0.2.7", "ann@example.org");
  out.push(await throttle.checkAccount("192.0.2.7", "ann@example.org"));
  out.push(await throttle.failed("10.0.0.1", "tim@example.org"), await throttle.checkIp("10.0.0.1"));
  out.push((await throttle.lockedOut()).map((l) => ({ ...l, retryAfterSec: l.retryAfterSec > 0 })).sort((a, b) => a.scope.localeCompare(b.scope)));
  return out;
}

test("the same answers as the in-memory throttle: account lockout per block, IP lockout, penalties, success forgets, exempt networks", async () => {
  const [pool] = await nodes(1);
  const memory = await sequence(new AuthThrottle(CONFIG, ["10.0.0.0/8"]));
  const pg = await sequence(new PgAuthThrottle(pool!, CONFIG, ["10.0.0.0/8"]));
  // Lockout times: both lock for lockoutSec from the failure that locked, give or take a second.
  const norm = (xs: unknown[]) =>
    JSON.parse(JSON.stringify(xs).replace(/"retryAfterSec":(9\d\d|\d+)/g, (_m, n) => `"retryAfterSec":${Number(n) >= 899 ? 900 : n}`));
  assert.deepEqual(norm(pg), norm(memory));
  assert.deepEqual((memory[4] as { locked: string[] }).locked, ["account"], "the 5th failure locks the account");
  assert.deepEqual(memory[6], { refused: true, scope: "account", retryAfterSec: 900 }, "from the same /24");
  assert.deepEqual(memory[7], { refused: false }, "not from elsewhere");
  assert.deepEqual((memory[12] as { locked: string[] }).locked, ["ip"], "the 10th failure from the IP locks it");
});

test("ten failures spread over three nodes at once lock the account once, as ten on one would", async () => {
  const three = await nodes(3);
  const throttles = three.map((p) => new PgAuthThrottle(p, { ...CONFIG, accountFailures: 10, ipFailures: 100 }));
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => throttles[i % 3]!.failed(`192.0.2.${i + 1}`, "tim@example.org")));
  assert.equal(results.filter((r) => r.locked.includes("account")).length, 1, "exactly one failure started the lockout");
  for (const [i, t] of throttles.entries()) {
    assert.equal((await t.checkAccount(`192.0.2.${200 + i}`, "tim@example.org")).refused, true, `node ${i} refuses`);
  }
  assert.equal((await throttles[0]!.checkAccount("198.51.100.7", "tim@example.org")).refused, false, "another block is not locked out");
  const penalties = results.map((r) => r.penaltyMs);
  assert.deepEqual(penalties.sort(), Array(10).fill(0), "one failure per IP: no penalty");
});

test("a window that has passed starts the count over; an error in the database allows and costs nothing", async () => {
  const [pool] = await nodes(1);
  const throttle = new PgAuthThrottle(pool!, { ...CONFIG, windowSec: 600, accountFailures: 3 });
  await throttle.failed("192.0.2.7", "tim@example.org");
  await throttle.failed("192.0.2.7", "tim@example.org");
  // Age the window by hand: the database's clock decides, not the node's.
  await pool!.run(statement("test-age-window", "UPDATE counters SET window_start = window_start - interval '601 seconds'"));
  const third = await throttle.failed("192.0.2.7", "tim@example.org");
  assert.deepEqual(third.locked, [], "a new window: the count is 1");
  assert.equal((await throttle.checkAccount("192.0.2.7", "tim@example.org")).refused, false);

  const broken = new PgPool({ url: "postgres://postern@127.0.0.1:9/none", poolSize: 1 });
  pools.push(broken);
  const warnings: string[] = [];
  const log = { info: () => undefined, warn: (_f: Record<string, unknown>, msg: string) => void warnings.push(msg) };
  const away = new PgAuthThrottle(broken, CONFIG, [], log);
  assert.deepEqual(await away.failed("192.0.2.7", "tim@example.org"), { penaltyMs: 0, locked: [] });
  assert.deepEqual(await away.checkIp("192.0.2.7"), { refused: false });
  assert.deepEqual(await away.lockedOut(), []);
  assert.ok(warnings.length >= 2);
  const limitsAway = new PgSendLimits(broken, { messagesPerHour: 1, recipientsPerHour: 1 }, log);
  assert.equal((await limitsAway.checkMessage("tim@example.org")).allow, true);
  await limitsAway.sent("tim@example.org", 3);
});

test("send limits are counted across nodes: messages at MAIL, recipients at RCPT, the same refusals as in memory", async () => {
  const [a, b] = await nodes(2);
  const config = { messagesPerHour: 3, recipientsPerHour: 5 };
  const one = new PgSendLimits(a!, config);
  const two = new PgSendLimits(b!, config);
  assert.equal((await one.checkMessage("tim@example.org")).allow, true);
  await one.sent("tim@example.org", 2);
  await two.sent("Tim@Example.org", 2);
  assert.equal((await two.checkMessage("tim@example.org")).allow, true);
  assert.equal((await one.checkRecipient("tim@example.org", 0)).allow, true);
  const refusedRcpt = await one.checkRecipient("tim@example.org", 1);
  assert.equal(refusedRcpt.allow, false);
  assert.match(refusedRcpt.allow ? "" : refusedRcpt.reply.lines.join(" "), /recipient limit reached \(5 per hour\)/);
  await two.sent("tim@example.org", 1);
  const refused = await one.checkMessage("tim@example.org");
  assert.equal(refused.allow, false);
  assert.equal(refused.allow ? 0 : refused.reply.code, 450);
  assert.equal((await one.checkMessage("ann@example.org")).allow, true, "another user is not limited");
  const off = new PgSendLimits(a!, { messagesPerHour: 0, recipientsPerHour: 0 });
  assert.equal((await off.checkMessage("tim@example.org")).allow, true, "0 turns a limit off");
  assert.equal((await off.checkRecipient("tim@example.org", 100)).allow, true);
});
