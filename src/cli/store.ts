/**
 * `postern store migrate|import`: the PostgreSQL store (`store.backend: postgres`, src/store/pg).
 * migrate creates or upgrades the schema (safe to run on several nodes at once); import copies an
 * existing SQLite user store (src/store/pg/import-users.ts) and an alias file (src/store/pg/aliases.ts) into it.
 */
import { readFileSync } from "node:fs";
import type { Config } from "../config/schema.js";
import { PgAliases } from "../store/pg/aliases.js";
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

/**
 * `postern store import --from-sqlite PATH --aliases FILE` (either or both): users and app passwords,
 * secrets as stored, and an alias file's entries; what is in PostgreSQL already is skipped, so a
 * second run changes nothing.
 */
export async function storeImport(opts: StoreOptions & { fromSqlite?: string; aliases?: string }): Promise<void> {
  if (opts.fromSqlite === undefined && opts.aliases === undefined) throw new Error("nothing to import: give --from-sqlite PATH and/or --aliases FILE");
  const resolved = commandConfig(opts.config);
  announce(resolved);
  const pool = configuredPool(resolved.config);
  try {
    await requireCurrentSchema(pool);
    if (opts.fromSqlite !== undefined) {
      const report = await importSqliteUsers(pool, opts.fromSqlite);
      process.stdout.write(
        `users: ${report.usersAdded} imported, ${report.usersSkipped.length} skipped (already in PostgreSQL)\n` +
          `app passwords: ${report.appPasswordsAdded} imported\n`,
      );
      for (const address of report.usersSkipped) process.stderr.write(`postern: skipped ${address}: already in PostgreSQL (kept as it is there)\n`);
    }
    if (opts.aliases !== undefined) {
      const report = await new PgAliases(pool).importFile(readFileSync(opts.aliases, "utf8"));
      process.stdout.write(`aliases: ${report.added} imported, ${report.skipped.length} skipped (already in PostgreSQL)\n`);
      for (const alias of report.skipped) process.stderr.write(`postern: skipped alias ${alias}: already in PostgreSQL (kept as it is there)\n`);
    }
  } finally {
    await pool.end();
  }
}
