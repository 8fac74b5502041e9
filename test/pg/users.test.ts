/** PgUserStore: the same behaviours as the SQLite store (test/auth/store-cases.ts), on a real PostgreSQL. */
import { after, before } from "node:test";
import { CredentialCache } from "../../src/auth/cache.js";
import { migrate } from "../../src/store/pg/migrations.js";
import { PgPool } from "../../src/store/pg/pool.js";
import { PgUserStore } from "../../src/store/pg/users.js";
import { appPasswordCases, mechanismCases, type WithCaseStore } from "../auth/store-cases.js";
import { HOSTNAME, RecordingHasher } from "../auth/store-helpers.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";

let db: TestPostgres;
let databases = 0;
before(async () => {
  db = await startPostgres();
});
after(async () => {
  await db?.stop();
});

/** Each case on its own fresh database; `other()` is a second node: its own pool and store. */
const withPg: WithCaseStore = async (body, options = {}) => {
  const url = await db.database(`users_${++databases}`);
  const pools: PgPool[] = [];
  const open = () => {
    const pool = new PgPool({ url, poolSize: 4 });
    pools.push(pool);
    return pool;
  };
  const pool = open();
  await migrate(pool);
  const hasher = new RecordingHasher();
  const store = new PgUserStore({
    pool,
    hostname: HOSTNAME,
    hasher,
    ...(options.requireAppPasswords !== undefined ? { requireAppPasswords: options.requireAppPasswords } : {}),
    ...(options.now ? { now: options.now } : {}),
    ...(options.cacheTtlSec ? { cache: new CredentialCache({ ttlMs: options.cacheTtlSec * 1000 }) } : {}),
  });
  try {
    return await body(store, { hasher, other: async () => new PgUserStore({ pool: open(), hostname: HOSTNAME, hasher }) });
  } finally {
    store.close();
    await Promise.all(pools.map((p) => p.end()));
  }
};

mechanismCases(withPg);
appPasswordCases(withPg);
