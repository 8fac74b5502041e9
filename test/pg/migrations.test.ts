/** `postern store migrate`: versioned steps, run once however many nodes migrate at once. */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { migrate, MIGRATIONS, schemaStatus, requireCurrentSchema } from "../../src/store/pg/migrations.js";
import { PgPool, statement } from "../../src/store/pg/pool.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { runCli } from "../e2e/helpers/postern.js";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { baseTestConfig } from "../helpers/test-config.js";

let db: TestPostgres;
before(async () => {
  db = await startPostgres();
});
after(async () => {
  await db?.stop();
});

const steps = statement("test-schema-steps", "SELECT id FROM postern_schema ORDER BY applied_at, id");

test("a fresh database gets every step once; a second run applies nothing", async () => {
  const pool = new PgPool({ url: await db.database("fresh") });
  try {
    await assert.rejects(requireCurrentSchema(pool), /run `postern store migrate`/);
    assert.deepEqual(
      await migrate(pool),
      MIGRATIONS.map((m) => m.id),
    );
    assert.deepEqual(await migrate(pool), []);
    assert.deepEqual(await schemaStatus(pool), { missing: [], unknown: [] });
    await requireCurrentSchema(pool);
    assert.equal((await pool.run(steps)).rows.length, MIGRATIONS.length);
  } finally {
    await pool.end();
  }
});

test("two migrators at once: each step runs exactly once, neither fails", async () => {
  const url = await db.database("concurrent");
  // Separate pools, as two nodes would have; a slow step keeps the first inside its transaction.
  const slow = [{ id: "0000-slow", sql: "SELECT pg_sleep(0.3)" }, ...MIGRATIONS];
  const pools = [new PgPool({ url }), new PgPool({ url })];
  try {
    const results = await Promise.all(pools.map((p) => migrate(p, slow)));
    const all = results.flat().sort();
    assert.deepEqual(all, slow.map((m) => m.id).sort(), "every step applied by exactly one of them");
    assert.ok(
      results.some((r) => r.length === 0),
      "the second found nothing left",
    );
    assert.equal((await pools[0]!.run(steps)).rows.length, slow.length);
  } finally {
    await Promise.all(pools.map((p) => p.end()));
  }
});

test("a failing step rolls the whole run back", async () => {
  const pool = new PgPool({ url: await db.database("failing") });
  try {
    const broken = [...MIGRATIONS, { id: "9999-broken", sql: "CREATE TABLE users (x int)" }];
    await assert.rejects(migrate(pool, broken), /already exists/);
    assert.deepEqual(
      (await schemaStatus(pool)).missing,
      MIGRATIONS.map((m) => m.id),
      "nothing recorded",
    );
    await assert.rejects(migrate(pool, [...MIGRATIONS, MIGRATIONS[0]!]), /appears twice/);
    assert.deepEqual(
      await migrate(pool),
      MIGRATIONS.map((m) => m.id),
    );
    assert.deepEqual((await schemaStatus(pool, MIGRATIONS.slice(1))).unknown, [MIGRATIONS[0]!.id], "a step this version does not know");
  } finally {
    await pool.end();
  }
});

test("postern store migrate --config, and config check refuses postgres without a url", async () => {
  const dir = await mkdtemp(join(tmpdir(), "postern-pg-cli-"));
  try {
    const configPath = join(dir, "postern.yaml");
    const url = await db.database("cli");
    await writeFile(configPath, stringify({ ...baseTestConfig(dir), store: { backend: "postgres", url } }));
    const first = await runCli(["store", "migrate", "--config", configPath]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /applied 0001-users/);
    const second = await runCli(["store", "migrate", "--config", configPath]);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, "schema is current\n");

    await writeFile(configPath, stringify({ ...baseTestConfig(dir), store: { backend: "postgres" } }));
    const check = await runCli(["config", "check", "--config", configPath]);
    assert.equal(check.code, 78, check.stdout);
    assert.match(check.stderr, /store\.url is required/);
    await writeFile(configPath, stringify({ ...baseTestConfig(dir), store: { backend: "postgres", url: "mysql://x" } }));
    assert.match((await runCli(["config", "check", "--config", configPath])).stderr, /postgres:\/\/ URL/);
    await writeFile(configPath, stringify({ ...baseTestConfig(dir) }));
    const sqlite = await runCli(["store", "migrate", "--config", configPath]);
    assert.equal(sqlite.code, 1);
    assert.match(sqlite.stderr, /not postgres/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
