/**
 * Issue 19, the cluster's queue from the command line with the servers running: `postern queue
 * list|show|hold|release|delete|flush` given one node's configuration act on mail another node
 * accepted (through the local server, whose runner takes the message's lease in the database);
 * and moving a single node onto PostgreSQL: `postern store import --from-sqlite` and
 * `postern store import-spool` from its stopped data directory (and `--aliases` its alias file), then a cluster node logs its
 * users in and delivers its queued mail; both imports run again change nothing. And a node whose
 * database connection dies inside a message's transaction answers 451, never 250.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runCli, startPostern, type Postern } from "./helpers/postern.js";
import { RawSmtp, b64 } from "./helpers/raw-smtp.js";
import { startSink, type Sink } from "../delivery/helpers/sink.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { PgPool, statement } from "../../src/store/pg/pool.js";
import { migrate } from "../../src/store/pg/migrations.js";
import { PgQueueStore } from "../../src/store/pg/queue.js";
import type { QueueEntry } from "../../src/queue/admin.js";

const JOHN = { address: "john@example.org", password: "correct horse battery staple" };
const MARY = { address: "mary@example.org", password: "mary's own passphrase" };

let db: TestPostgres;
let sink: Sink;
let pool: PgPool;
/** The sink refuses every recipient with 451 until this is true. */
let accepting = false;
const started: Postern[] = [];

before(async () => {
  db = await startPostgres();
  sink = await startSink({ rcptReply: () => (accepting ? undefined : "451 4.3.0 try again later") });
  pool = new PgPool({ url: db.url, poolSize: 2 });
  await migrate(pool);
});
after(async () => {
  for (const n of started) await n.cleanup().catch(() => undefined);
  await pool?.end();
  await sink?.close();
  await db?.stop();
});

async function node(opts: { name: string; users?: { address: string; password: string }[]; postgres?: boolean }): Promise<Postern> {
  const n = await startPostern({
    users: opts.users,
    config: {
      relay: { smarthost: `127.0.0.1:${sink.port}` },
      // A deferred message waits an hour: nothing moves unless a command moves it.
      queue: { firstRetrySec: 3600 },
      ...(opts.postgres === false ? {} : { store: { backend: "postgres", url: db.url, nodeName: opts.name, poolSize: 4, pollMs: 100 } }),
    },
  });
  started.push(n);
  return n;
}

/** Submits one message (STARTTLS, AUTH PLAIN) and returns its queue id from the 250. */
async function submit(n: Postern, subject: string, user = JOHN.address, password = JOHN.password): Promise<string> {
  const c = await RawSmtp.open(n.ports.submission);
  try {
    await c.greetAndStartTls();
    await c.expect(`AUTH PLAIN ${b64(`\0${user}\0${password}`)}`, 235);
    await c.expect(`MAIL FROM:<${user}>`, 250);
    await c.expect("RCPT TO:<someone@elsewhere.test>", 250);
    await c.expect("DATA", 354);
    const r = await c.cmd(`From: ${user}\r\nTo: someone@elsewhere.test\r\nSubject: ${subject}\r\n\r\n${subject}\r\n.`);
    assert.equal(r.code, 250, r.text);
    return /queued as (\S+)/.exec(r.text)![1]!;
  } finally {
    c.close();
  }
}

async function cli(n: Postern, args: string[], input?: string): Promise<string> {
  const r = await runCli([...args, "--config", n.configPath], input);
  assert.equal(r.code, 0, `postern ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

const deferredOn = (n: Postern, id: string) => n.waitForLog((l) => l.event === "deferred" && l.id === id, 20_000);
const deliveredOn = (n: Postern, id: string) => n.waitForLog((l) => l.event === "delivered" && l.id === id, 20_000);

test("queue list|show|hold|release|delete|flush given node B's configuration act on mail node A accepted", async () => {
  accepting = false;
  const a = await node({ name: "node-a", users: [JOHN] });
  const ids: string[] = [];
  for (const subject of ["first", "second", "third"]) {
    const id = await submit(a, subject);
    await deferredOn(a, id); // tried once by A, refused with 451, due again in an hour
    ids.push(id);
  }
  // B starts only now: running, it would poll for due mail too and could take a new message first.
  const b = await node({ name: "node-b" });
  const [held, deleted, flushed] = ids as [string, string, string];
  const store = new PgQueueStore(pool, { nodeName: "test" });

  const listed = JSON.parse(await cli(b, ["queue", "list", "--json"])) as QueueEntry[];
  assert.deepEqual(
    listed.map((e) => [e.id, e.status]),
    ids.map((id) => [id, "deferred"]),
    "B lists the cluster's queue",
  );
  assert.match(await cli(b, ["queue", "show", held]), /Subject: first/);

  await cli(b, ["queue", "hold", held]);
  assert.equal((await store.readEnvelope(held)).held, true, "held in the database");
  await b.waitForLog((l) => l.event === "queue-hold" && l.id === held);
  await cli(b, ["queue", "delete", deleted]);
  assert.equal(await store.has(deleted), false, "deleted from the database");

  accepting = true;
  assert.match(await cli(b, ["queue", "flush"]), /skipped 1 held/);
  await deliveredOn(b, flushed); // B attempted A's message at once, not an hour later
  assert.equal(await store.has(flushed), false);

  await cli(b, ["queue", "release", held]);
  assert.equal((await store.readEnvelope(held)).held, undefined, "released in the database");
  await cli(b, ["queue", "flush", held]);
  await deliveredOn(b, held);
  assert.deepEqual(JSON.parse(await cli(a, ["queue", "list", "--json"])), [], "A sees the queue empty");
  const subjects = sink.messages.map((m) => /^Subject: (\w+)/m.exec(m.data.toString())?.[1]).sort();
  assert.deepEqual(subjects, ["first", "third"], "the deleted one never left");
  // Read after a clean stop, when every line A wrote has arrived: B did both flushes' work.
  await a.stop();
  assert.equal(
    a.logs.some((l) => l.event === "delivered"),
    false,
    "A delivered nothing itself",
  );
});

test("a single node moves onto PostgreSQL: its users, app passwords and queued mail are imported once and work on a cluster node", async () => {
  accepting = false;
  const single = await node({ name: "single", users: [MARY], postgres: false });
  const phone = (await cli(single, ["user", "app-password", "add", MARY.address, "--name", "phone"])).trim();
  const queued = await submit(single, "waiting", MARY.address, phone);
  await deferredOn(single, queued);
  await single.stop(); // a clean stop: the spool's data directory is free to read

  const sqlite = join(single.dir, "data", "users.sqlite");
  const spool = join(single.dir, "data", "queue");
  const aliasFile = join(single.dir, "aliases");
  await writeFile(aliasFile, "# the single node's aliases\nsupport@example.org: mary\n");
  const cluster = await node({ name: "cluster" });
  const importUsers = ["store", "import", "--from-sqlite", sqlite, "--aliases", aliasFile];
  const importSpool = ["store", "import-spool", "--spool", spool];
  assert.match(await cli(cluster, importUsers), /^users: 1 imported, 0 skipped.*\napp passwords: 1 imported\naliases: 1 imported, 0 skipped/);
  assert.match(await cli(cluster, importSpool), /^imported 1 message, 0 already in the database, 0 failed/);
  // Running either again is safe: what is there is skipped.
  assert.match(
    await cli(cluster, importUsers),
    /^users: 0 imported, 1 skipped \(already in PostgreSQL\)\napp passwords: 0 imported\naliases: 0 imported, 1 skipped/,
  );
  assert.match(await cli(cluster, importSpool), /^imported 0 messages, 1 already in the database, 0 failed/);

  accepting = true;
  await cli(cluster, ["queue", "flush", queued]);
  await deliveredOn(cluster, queued);
  assert.ok(
    sink.messages.some((m) => /Subject: waiting/.test(m.data.toString())),
    "the imported message reached the next hop",
  );
  // The alias is a recipient on the cluster node.
  const mta = await RawSmtp.open(cluster.ports.mta);
  try {
    await mta.reply();
    await mta.expect("EHLO client.test", 250);
    await mta.expect("MAIL FROM:<someone@elsewhere.test>", 250);
    await mta.expect("RCPT TO:<support@example.org>", 250);
  } finally {
    mta.close();
  }
  // The password and the app password, hashed on the old node, log in on the cluster.
  for (const password of [MARY.password, phone]) {
    const c = await RawSmtp.open(cluster.ports.submissions, { tls: true });
    try {
      await c.reply();
      await c.expect("EHLO client.test", 250);
      await c.expect(`AUTH PLAIN ${b64(`\0${MARY.address}\0${password}`)}`, 235);
    } finally {
      c.close();
    }
  }
});

// The message's transaction is the node's one backend holding a transaction id (it has written a
// chunk); whether it is idle or writing the next chunk at the moment asked does not matter.
const openTransactions = statement(
  "test_open_transactions",
  "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND backend_xid IS NOT NULL",
);
const terminateTransactions = statement(
  "test_terminate_transactions",
  "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = $1 AND backend_xid IS NOT NULL",
);

test("the database connection lost inside a message's transaction: the client gets 451, never 250, and nothing is queued", async () => {
  const n = await node({ name: "cut", users: [] });
  const c = await RawSmtp.open(n.ports.submission);
  try {
    await c.greetAndStartTls();
    await c.expect(`AUTH PLAIN ${b64(`\0${JOHN.address}\0${JOHN.password}`)}`, 235);
    await c.expect(`MAIL FROM:<${JOHN.address}>`, 250);
    await c.expect("RCPT TO:<someone@elsewhere.test>", 250);
    await c.expect("DATA", 354);
    // More than one stored chunk (256 KiB): the node opens the message's transaction mid-DATA.
    const line = `${"x".repeat(76)}\r\n`;
    c.write(`From: ${JOHN.address}\r\nSubject: cut\r\n\r\n${line.repeat(6000)}`);
    const queuedBefore = (await new PgQueueStore(pool, { nodeName: "test" }).list()).length;
    let open = 0;
    // No event tells the test the node's transaction began: ask the database until it shows.
    const deadline = Date.now() + 20_000;
    while (open === 0 && Date.now() < deadline) open = (await pool.run<{ n: number }>(openTransactions, ["postern cut"])).rows[0]!.n;
    assert.equal((await pool.run<{ n: number }>(terminateTransactions, ["postern cut"])).rows[0]!.n, 1);
    c.write(`${line.repeat(100)}.\r\n`);
    const r = await c.reply();
    assert.equal(r.code, 451, r.text);
    assert.equal((await new PgQueueStore(pool, { nodeName: "test" }).list()).length, queuedBefore, "nothing queued");
    // The node goes on: the next message on the same connection is committed on another connection.
    await c.expect(`MAIL FROM:<${JOHN.address}>`, 250);
    await c.expect("RCPT TO:<someone@elsewhere.test>", 250);
    await c.expect("DATA", 354);
    assert.equal((await c.cmd(`From: ${JOHN.address}\r\nSubject: after\r\n\r\nafter\r\n.`)).code, 250);
  } finally {
    c.close();
  }
});
