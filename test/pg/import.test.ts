/** `postern store import --from-sqlite`: users and app passwords move with their secrets as stored; a second run changes nothing. */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { SqliteUserStore } from "../../src/auth/sqlite-store.js";
import { createClientMechanism, createServerMechanism } from "../../src/sasl/index.js";
import { migrate } from "../../src/store/pg/migrations.js";
import { PgPool } from "../../src/store/pg/pool.js";
import { PgUserStore } from "../../src/store/pg/users.js";
import { runExchange } from "../sasl/helpers.js";
import { HOSTNAME, RecordingHasher } from "../auth/store-helpers.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { baseTestConfig } from "../helpers/test-config.js";
import { runCli } from "../e2e/helpers/postern.js";

let db: TestPostgres;
let dir: string;
before(async () => {
  db = await startPostgres();
  dir = await mkdtemp(join(tmpdir(), "postern-pg-import-"));
});
after(async () => {
  await db?.stop();
  await rm(dir, { recursive: true, force: true });
});

test("users, flags, senders and app passwords arrive with secrets every mechanism accepts; a second run skips them all", async () => {
  const path = join(dir, "users.sqlite");
  const sqlite = new SqliteUserStore({ path, hostname: HOSTNAME, hasher: new RecordingHasher() });
  await sqlite.addUser("Tim@example.org", "tims password", { senders: ["@example.net"] });
  await sqlite.addUser("relay@example.org", "relay password", { relayClient: true, requireAppPasswords: true });
  await sqlite.addUser("off@example.org", "off password");
  sqlite.setDisabled("off@example.org", true);
  const phone = await sqlite.addAppPassword("tim@example.org", "phone");
  const app = await sqlite.addAppPassword("relay@example.org", "mta");
  const usedBefore = sqlite.listAppPasswords("tim@example.org");
  sqlite.close();

  const url = await db.database("imported");
  const pool = new PgPool({ url });
  try {
    await migrate(pool);
    // Already in PostgreSQL: kept as it is there.
    const pg = new PgUserStore({ pool, hostname: HOSTNAME, hasher: new RecordingHasher() });
    await pg.addUser("off@example.org", "the postgres password");

    const configPath = join(dir, "postern.yaml");
    await writeFile(configPath, stringify({ ...baseTestConfig(dir), store: { backend: "postgres", url } }));
    const first = await runCli(["store", "import", "--from-sqlite", path, "--config", configPath]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, "users: 2 imported, 1 skipped (already in PostgreSQL)\napp passwords: 2 imported\n");
    assert.match(first.stderr, /skipped off@example\.org/);

    assert.deepEqual(await pg.listUsers(), [
      { address: "off@example.org", senders: [], disabled: false },
      { address: "relay@example.org", senders: [], disabled: false, relayClient: true },
      { address: "Tim@example.org", senders: ["@example.net"], disabled: false },
    ]);
    assert.equal((await pg.verifyPassword("off@example.org", "the postgres password")).ok, true);
    assert.deepEqual(await pg.listAppPasswords("tim@example.org"), usedBefore);
    assert.deepEqual(await pg.requiresAppPasswords("relay@example.org"), { required: true, byDefault: false });
    assert.deepEqual(await pg.verifyPassword("relay@example.org", app), { ok: true, user: "relay@example.org", credential: "mta" });
    // Every mechanism against the imported secrets: nobody's password was needed to move them.
    for (const mechanism of ["PLAIN", "LOGIN", "SCRAM-SHA-256", "CRAM-MD5", "DIGEST-MD5"]) {
      const step = await runExchange(
        createServerMechanism(mechanism, { verifier: pg, hostname: HOSTNAME, authzidAllowed: () => false, fakeSaltKey: Buffer.alloc(32) })!,
        createClientMechanism(mechanism, { username: "Tim@example.org", password: "tims password" })!,
      );
      assert.equal(step.kind, "success", mechanism);
    }
    for (const mechanism of ["PLAIN", "SCRAM-SHA-256", "CRAM-MD5"]) {
      const step = await runExchange(
        createServerMechanism(mechanism, { verifier: pg, hostname: HOSTNAME, authzidAllowed: () => false, fakeSaltKey: Buffer.alloc(32) })!,
        createClientMechanism(mechanism, { username: "Tim@example.org", password: phone })!,
      );
      assert.equal(step.kind === "success" && step.identity.credential, "phone", mechanism);
    }

    const again = await runCli(["store", "import", "--from-sqlite", path, "--config", configPath]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, "users: 0 imported, 3 skipped (already in PostgreSQL)\napp passwords: 0 imported\n");
    const missing = await runCli(["store", "import", "--from-sqlite", join(dir, "none.sqlite"), "--config", configPath]);
    assert.equal(missing.code, 1);
    pg.close();
  } finally {
    await pool.end();
  }
});
