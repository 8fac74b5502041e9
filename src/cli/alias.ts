/**
 * `postern alias list|set|del`: the cluster's aliases in PostgreSQL (`store.backend: postgres`,
 * src/store/pg/aliases.ts); every node sees a change at its next lookup. With the default backend
 * aliases live in `aliases.file` only: edit that file.
 */
import { PgAliases } from "../store/pg/aliases.js";
import { requireCurrentSchema } from "../store/pg/migrations.js";
import { announce, commandConfig } from "./config-source.js";
import { configuredPool } from "./store.js";

interface AliasOptions {
  config?: string;
}

async function withAliases<T>(opts: AliasOptions, change: boolean, fn: (aliases: PgAliases) => Promise<T>): Promise<T> {
  const resolved = commandConfig(opts.config);
  if (change) announce(resolved);
  const pool = configuredPool(resolved.config);
  try {
    await requireCurrentSchema(pool);
    return await fn(new PgAliases(pool));
  } finally {
    await pool.end();
  }
}

/** One line per alias, in the alias file's syntax. */
export async function aliasList(opts: AliasOptions): Promise<void> {
  const rows = await withAliases(opts, false, (a) => a.list());
  process.stdout.write(rows.map((r) => `${r.alias}: ${r.targets.join(", ")}\n`).join(""));
}

/** `postern alias set sales@example.org ann bob@example.net` (targets may also be comma-separated). */
export async function aliasSet(alias: string, targets: string[], opts: AliasOptions): Promise<void> {
  const list = targets
    .flatMap((t) => t.split(","))
    .map((t) => t.trim())
    .filter((t) => t !== "");
  const row = await withAliases(opts, true, (a) => a.set(alias, list));
  process.stdout.write(`${row.alias}: ${row.targets.join(", ")}\n`);
}

export async function aliasDel(alias: string, opts: AliasOptions): Promise<void> {
  if (!(await withAliases(opts, true, (a) => a.remove(alias)))) throw new Error(`no alias ${alias}`);
}
