/**
 * The cluster's queue from the command line, with no server on this machine: `postern store
 * import-spool` copies a file spool into PostgreSQL (idempotent by queue id), and `postern queue
 * list|show|hold|release|delete|flush` act on the database, each change under the message's lease.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { stringify } from "yaml";
import { migrate } from "../../src/store/pg/migrations.js";
import { PgPool } from "../../src/store/pg/pool.js";
import { PgQueueStore } from "../../src/store/pg/queue.js";
import { Spool } from "../../src/queue/spool.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { baseTestConfig } from "../helpers/test-config.js";
import { runCli } from "../e2e/helpers/postern.js";
import { commitMessage } from "../queue/helpers.js";
import type { QueueEntry } from "../../src/queue/admin.js";

let db: TestPostgres;
let dir: string;
let pool: PgPool;
before(async () => {
  db = await startPostgres();
  dir = await mkdtemp(join(tmpdir(), "postern-pg-cli-"));
  pool = new PgPool({ url: db.url, poolSize: 2 });
  await migrate(pool);
});
after(async () => {
  await pool?.end();
  await db?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function configFile(): Promise<string> {
  const path = join(dir, "postern.yaml");
  await writeFile(path, stringify({ ...baseTestConfig(dir), store: { backend: "postgres", url: db.url, nodeName: "admin-host" } }));
  return path;
}

async function cli(args: string[]): Promise<string> {
  const r = await runCli(args);
  assert.equal(r.code, 0, `postern ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

test("import-spool copies a stopped server's spool once; queue commands act on the database", async () => {
  const config = await configFile();
  // A single node's spool, as a stopped server left it.
  const spoolDir = join(dir, "old-node", "queue");
  const spool = new Spool(spoolDir);
  await spool.init();
  const bodies = ["Subject: one\r\n\r\n1\r\n", "Subject: two\r\n\r\n2\r\n", "Subject: three\r\n\r\n" + "3".repeat(600_000) + "\r\n"];
  const ids: string[] = [];
  for (const b of bodies) ids.push(await commitMessage(spool, b, ["rcpt@elsewhere.test"]));
  await spool.close();

  assert.match(await cli(["store", "import-spool", "--spool", spoolDir, "--config", config]), /imported 3 messages, 0 already in the database, 0 failed/);
  assert.match(await cli(["store", "import-spool", "--spool", spoolDir, "--config", config]), /imported 0 messages, 3 already in the database, 0 failed/);
  const store = new PgQueueStore(pool, { nodeName: "test" });
  assert.deepEqual(await store.list(), ids);
  for (const [i, id] of ids.entries()) {
    const env = await store.readEnvelope(id);
    assert.deepEqual(env, await spool.readEnvelope(id), "the envelope as it was");
    assert.equal((await buffer(store.message(env).open())).toString(), bodies[i], "the bytes as they were");
  }

  const list = JSON.parse(await cli(["queue", "list", "--json", "--config", config])) as QueueEntry[];
  assert.deepEqual(
    list.map((e) => [e.id, e.status]),
    ids.map((id) => [id, "queued"]),
  );
  await cli(["queue", "hold", ids[0]!, "--config", config]);
  assert.equal((await store.readEnvelope(ids[0]!)).held, true);
  assert.match(await cli(["queue", "show", ids[0]!, "--config", config]), /Subject: one/);
  // A message a node is attempting right now is not changed under it.
  const busy = await store.claim(ids[1]!, 60_000);
  const refused = await runCli(["queue", "delete", ids[1]!, "--config", config]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /being worked on by a node/);
  await busy!.release();
  await cli(["queue", "delete", ids[1]!, "--config", config]);
  assert.equal(await store.has(ids[1]!), false);
  // Flush: the pending recipients are due now (a node's poll then takes them); held ones are named.
  const later = await store.readEnvelope(ids[2]!);
  later.recipients[0]!.attempts = 1;
  later.recipients[0]!.nextAttemptAt = new Date(Date.now() + 3600_000).toISOString();
  await store.updateEnvelope(later);
  assert.equal((await store.claimDue(10, 1000)).length, 0, "nothing due: one held, one deferred");
  assert.match(await cli(["queue", "flush", "--config", config]), /flushed 1 message; skipped 1 held message/);
  await cli(["queue", "release", ids[0]!, "--config", config]);
  const due = await store.claimDue(10, 1000);
  assert.deepEqual(due.map((l) => l.id).sort(), [ids[0]!, ids[2]!].sort());
  for (const l of due) await l.release();
});
