/**
 * The PostgreSQL schema, as versioned steps recorded in `postern_schema`. `postern store migrate`
 * applies the missing ones in one transaction under a transaction-level advisory lock, so two nodes
 * (or two admins) migrating at once run each step exactly once: the second waits, then finds
 * nothing left to do. A failed step rolls the whole run back. Nodes refuse to start on a schema
 * that lacks steps they know (`schemaStatus`), rather than migrate behind the admin's back.
 */
import type { Migration } from "./migration.js";
import { ALIAS_MIGRATIONS } from "./aliases.js";
import { QUEUE_MIGRATIONS } from "./migrations-queue.js";
import { statement, type PgPool, type PgRunner } from "./pool.js";

export type { Migration } from "./migration.js";

/** Users, app passwords and their derived secrets (src/store/pg/users.ts); cluster counters (counters.ts). */
const CORE_MIGRATIONS: readonly Migration[] = [
  {
    id: "0001-users",
    sql: `
      CREATE TABLE users (
        login_key text PRIMARY KEY,       -- the address as lookups fold it (ASCII lower-case, as SQLite's NOCASE)
        address text NOT NULL,            -- as added: trimmed, domain lower-cased
        password_hash text NOT NULL,
        scram_salt bytea, scram_iterations integer, scram_stored_key bytea, scram_server_key bytea,
        cram_md5 bytea,                   -- Dovecot {CRAM-MD5} order: outer state, then inner state
        digest_ha1 bytea,
        digest_realm text,                -- the realm digest_ha1 was computed for
        senders jsonb NOT NULL DEFAULT '[]',
        disabled boolean NOT NULL DEFAULT false,
        relay_client boolean NOT NULL DEFAULT false,
        require_app_passwords boolean,    -- NULL: auth.requireAppPasswords decides
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL
      );
      CREATE TABLE app_passwords (
        login_key text NOT NULL REFERENCES users (login_key) ON DELETE CASCADE,
        name text NOT NULL,
        lookup_id text NOT NULL,
        password_hash text NOT NULL,
        created_at timestamptz NOT NULL,
        last_used_at timestamptz,
        last_used_ip text,
        scram_salt bytea, scram_iterations integer,
        scram_keys bytea,                 -- per form: StoredKey (32), ServerKey (32)
        cram_md5 bytea,                   -- per form: outer state (16), inner state (16)
        PRIMARY KEY (login_key, name),
        UNIQUE (login_key, lookup_id)
      )`,
  },
  {
    id: "0002-counters",
    // One row per key (AUTH failures per IP and per account from a block, sends per user), counted
    // by one UPSERT each; times are the database's clock, so every node reads the same window.
    sql: `
      CREATE TABLE counters (
        key text PRIMARY KEY,
        window_start timestamptz NOT NULL,
        events integer NOT NULL,
        amount bigint NOT NULL DEFAULT 0,
        locked_until timestamptz,
        locked_at timestamptz             -- when the current lockout began (a failure that starts one says so)
      );
      CREATE INDEX counters_locked ON counters (locked_until) WHERE locked_until IS NOT NULL`,
  },
];

/** Every step, in the order applied: core first, then the queue's (migrations-queue.ts), then the aliases' (aliases.ts). */
export const MIGRATIONS: readonly Migration[] = [...CORE_MIGRATIONS, ...QUEUE_MIGRATIONS, ...ALIAS_MIGRATIONS];

/** pg_advisory_xact_lock key of the migrating transaction ("postern" in a 64-bit integer). */
const MIGRATION_LOCK_KEY = "7021802617845358";

const applied = statement("schema-applied", "SELECT id FROM postern_schema");
const record = statement("schema-record", "INSERT INTO postern_schema (id) VALUES ($1)");
const exists = statement("schema-exists", "SELECT to_regclass('postern_schema') IS NOT NULL AS present");

function checkIds(list: readonly Migration[]): void {
  const seen = new Set<string>();
  for (const m of list) {
    if (seen.has(m.id)) throw new Error(`migration id ${m.id} appears twice`);
    seen.add(m.id);
  }
}

async function appliedIds(db: PgRunner): Promise<Set<string>> {
  const present = (await db.run<{ present: boolean }>(exists)).rows[0]?.present === true;
  if (!present) return new Set();
  return new Set((await db.run<{ id: string }>(applied)).rows.map((r) => r.id));
}

/** Applies the missing steps; returns their ids (empty: the schema was current). */
export async function migrate(pool: PgPool, list: readonly Migration[] = MIGRATIONS): Promise<string[]> {
  checkIds(list);
  return pool.withTransaction(async (tx) => {
    // Held until COMMIT/ROLLBACK: a second migrator waits here, then sees the steps as applied.
    await tx.exec(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`);
    await tx.exec("CREATE TABLE IF NOT EXISTS postern_schema (id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
    const done = await appliedIds(tx);
    const ran: string[] = [];
    for (const m of list) {
      if (done.has(m.id)) continue;
      await tx.exec(m.sql);
      await tx.run(record, [m.id]);
      ran.push(m.id);
    }
    return ran;
  });
}

/** What a node compares at start: steps it knows that are missing, and steps it does not know (a newer Postern migrated). */
export async function schemaStatus(pool: PgPool, list: readonly Migration[] = MIGRATIONS): Promise<{ missing: string[]; unknown: string[] }> {
  const done = await appliedIds(pool);
  const known = new Set(list.map((m) => m.id));
  return { missing: list.filter((m) => !done.has(m.id)).map((m) => m.id), unknown: [...done].filter((id) => !known.has(id)).sort() };
}

/** Throws when the database lacks steps this Postern needs (the admin runs `postern store migrate`). */
export async function requireCurrentSchema(pool: PgPool): Promise<void> {
  const { missing } = await schemaStatus(pool);
  if (missing.length > 0) {
    throw new Error(`the PostgreSQL schema lacks ${missing.length} step(s) (${missing.join(", ")}): run \`postern store migrate\``);
  }
}
