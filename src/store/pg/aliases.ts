/**
 * Aliases in PostgreSQL (`store.backend: postgres`): the alias file's lines as rows, shared by every
 * node and read at each lookup, so an alias added or removed through one node applies on all at
 * once. The resolver (src/delivery/aliases.ts) asks here before its own `aliases.file`; keys and
 * targets are those of a file line, checked by the same parser (targets stay addresses).
 */
import { parseAliasFile } from "../../delivery/aliases.js";
import type { Migration } from "./migration.js";
import { statement, type PgPool } from "./pool.js";

/** Appended to the other steps by migrations.ts; append only. */
export const ALIAS_MIGRATIONS: readonly Migration[] = [
  {
    id: "aliases-0001",
    // alias: as the file's key, normalised ("sales@example.org", "postmaster", "@example.org").
    sql: "CREATE TABLE aliases (alias text PRIMARY KEY, targets jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())",
  },
];

const SQL = {
  lookup: statement("aliases-lookup", "SELECT alias, targets FROM aliases WHERE alias = ANY($1::text[])"),
  list: statement("aliases-list", "SELECT alias, targets FROM aliases ORDER BY alias"),
  put: statement(
    "aliases-put",
    "INSERT INTO aliases (alias, targets) VALUES ($1, $2::jsonb) ON CONFLICT (alias) DO UPDATE SET targets = EXCLUDED.targets, updated_at = now()",
  ),
  addNew: statement("aliases-add-new", "INSERT INTO aliases (alias, targets) VALUES ($1, $2::jsonb) ON CONFLICT (alias) DO NOTHING"),
  remove: statement("aliases-remove", "DELETE FROM aliases WHERE alias = $1"),
};

export interface AliasRow {
  alias: string;
  targets: string[];
}

/** One alias as a file line would give it: its normalised key and checked targets (throws otherwise). */
function parseAlias(alias: string, targets: readonly string[]): AliasRow {
  const line = `${alias.trim()}: ${targets.join(", ")}`;
  if (/[\r\n#]/.test(line)) throw new Error("an alias and its targets are one line without #");
  const [entry] = parseAliasFile(line);
  return { alias: entry![0], targets: entry![1] };
}

export class PgAliases {
  constructor(private readonly pool: PgPool) {}

  /** The rows among `keys` (normalised keys, as the resolver builds them): one query per lookup. */
  async lookup(keys: readonly string[]): Promise<Map<string, string[]>> {
    const rows = (await this.pool.run<AliasRow>(SQL.lookup, [keys])).rows;
    return new Map(rows.map((r) => [r.alias, r.targets]));
  }

  async list(): Promise<AliasRow[]> {
    return (await this.pool.run<AliasRow>(SQL.list)).rows;
  }

  /** Adds the alias, or replaces its targets. */
  async set(alias: string, targets: readonly string[]): Promise<AliasRow> {
    const row = parseAlias(alias, targets);
    await this.pool.run(SQL.put, [row.alias, JSON.stringify(row.targets)]);
    return row;
  }

  /** False when there was no such alias. */
  async remove(alias: string): Promise<boolean> {
    const { alias: key } = parseAlias(alias, ["x"]);
    return ((await this.pool.run(SQL.remove, [key])).rowCount ?? 0) > 0;
  }

  /**
   * An alias file's entries, in one transaction; an alias already in the database is kept as it
   * is there and reported, so importing the same file again changes nothing.
   */
  async importFile(text: string): Promise<{ added: number; skipped: string[] }> {
    const entries = [...parseAliasFile(text)];
    return this.pool.withTransaction(async (tx) => {
      const skipped: string[] = [];
      for (const [alias, targets] of entries) {
        if ((await tx.run(SQL.addNew, [alias, JSON.stringify(targets)])).rowCount !== 1) skipped.push(alias);
      }
      return { added: entries.length - skipped.length, skipped };
    });
  }
}
