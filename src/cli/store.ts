/**
 * `postern store migrate|import`: the PostgreSQL store (`store.backend: postgres`, src/store/pg).
 * migrate creates or upgrades the schema (safe to run on several nodes at once); import copies an
 * existing SQLite user store into it (src/store/pg/import-users.ts).
 */
import type { Config } from "../config/schema.js";
import { importSqliteUsers } from "../store/pg/import-users.js";
import { migrate, requireCurrentSchema } from "../store/pg/migrations.js";
import { openPgPool, type PgPool } from "../store/pg/pool.js";
import { announce, commandConfig } from "./config-source.js";

interface StoreOptions {
  config?: string;
}

/** The configured database; refuses a configuration whose store is not PostgreSQL. */
export function configuredPool(config: Config): PgPool {
  if (config.store.backend !== "postgres") throw new Error("store.backend is not postgres: this command works on the PostgreSQL store only");
  return openPgPool(config.store);
}

export async function storeMigrate(opts: StoreOptions): Promise<void> {
  const resolved = commandConfig(opts.config);
  announce(resolved);
  const pool = configuredPool(resolved.config);
  try {
    const ran = await migrate(pool);
    process.stdout.write(ran.length === 0 ? "schema is current\n" : ran.map((id) => `applied ${id}\n`).join(""));
  } finally {
    await pool.end();
  }
}

/** `postern store import --from-sqlite PATH`: users and app passwords, secrets as stored; existing users skipped. */
export async function storeImport(opts: StoreOptions & { fromSqlite?: string }): Promise<void> {
  if (opts.fromSqlite === undefined) throw new Error("nothing to import: give --from-sqlite PATH");
  const resolved = commandConfig(opts.config);
  announce(resolved);
  const pool = configuredPool(resolved.config);
  try {
    await requireCurrentSchema(pool);
    const report = await importSqliteUsers(pool, opts.fromSqlite);
    process.stdout.write(
      `users: ${report.usersAdded} imported, ${report.usersSkipped.length} skipped (already in PostgreSQL)\n` +
        `app passwords: ${report.appPasswordsAdded} imported\n`,
    );
    for (const address of report.usersSkipped) process.stderr.write(`postern: skipped ${address}: already in PostgreSQL (kept as it is there)\n`);
  } finally {
    await pool.end();
  }
}
