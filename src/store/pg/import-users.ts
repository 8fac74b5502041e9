/**
 * `postern store import --from-sqlite`: copies a SQLite user store (src/auth/sqlite-store.ts) into
 * PostgreSQL — users, their app passwords, and every secret exactly as stored (hashes and derived
 * SCRAM/CRAM-MD5/DIGEST-MD5 secrets: nobody's password is needed or known). One transaction;
 * a user already in PostgreSQL is skipped with its app passwords (its secrets there, salt
 * included, are not mixed with the file's), so running it again changes nothing.
 */
import Database from "better-sqlite3";
import { userLoginKey } from "../../auth/user-store-rules.js";
import { statement, type PgPool } from "./pool.js";

export interface UserImportReport {
  usersAdded: number;
  /** Addresses already in PostgreSQL, left as they are there. */
  usersSkipped: string[];
  appPasswordsAdded: number;
}

const ADD_USER = statement(
  "import-user",
  `INSERT INTO users (login_key, address, password_hash, scram_salt, scram_iterations, scram_stored_key, scram_server_key,
     cram_md5, digest_ha1, digest_realm, senders, disabled, relay_client, require_app_passwords, created_at, updated_at)
   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15, $16)
   ON CONFLICT (login_key) DO NOTHING`,
);
const ADD_APP_PASSWORD = statement(
  "import-app-password",
  `INSERT INTO app_passwords (login_key, name, lookup_id, password_hash, created_at, last_used_at, last_used_ip,
     scram_salt, scram_iterations, scram_keys, cram_md5)
   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
   ON CONFLICT DO NOTHING`,
);

/** A row as any schema version of the SQLite store has it (later columns may be absent). */
type SqliteRow = Record<string, unknown>;

const bool = (v: unknown) => v !== undefined && v !== null && Number(v) !== 0;
const blob = (v: unknown) => (Buffer.isBuffer(v) ? v : null);
const text = (v: unknown) => (typeof v === "string" ? v : null);
const int = (v: unknown) => (typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : null);

/** Senders as the file keeps them (a JSON array); anything else is an empty list. */
function senders(v: unknown): string {
  try {
    const parsed: unknown = JSON.parse(String(v ?? "[]"));
    return JSON.stringify(Array.isArray(parsed) ? parsed.filter((s) => typeof s === "string") : []);
  } catch {
    return "[]";
  }
}

export async function importSqliteUsers(pool: PgPool, sqlitePath: string): Promise<UserImportReport> {
  // Read-only: the file stays as it was (a server may still be using it).
  const source = new Database(sqlitePath, { readonly: true, fileMustExist: true });
  let users: SqliteRow[];
  let apps: SqliteRow[];
  try {
    users = source.prepare("SELECT * FROM users ORDER BY address").all() as SqliteRow[];
    const hasApps = source.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'app_passwords'").get() !== undefined;
    apps = hasApps ? (source.prepare("SELECT * FROM app_passwords ORDER BY address, name").all() as SqliteRow[]) : [];
  } finally {
    source.close();
  }
  return pool.withTransaction(async (tx) => {
    const report: UserImportReport = { usersAdded: 0, usersSkipped: [], appPasswordsAdded: 0 };
    const added = new Set<string>();
    for (const u of users) {
      const address = String(u.address);
      const key = userLoginKey(address);
      const now = new Date().toISOString();
      const result = await tx.run(ADD_USER, [
        key,
        address,
        String(u.password_hash),
        blob(u.scram_salt),
        int(u.scram_iterations),
        blob(u.scram_stored_key),
        blob(u.scram_server_key),
        blob(u.cram_md5),
        blob(u.digest_ha1),
        text(u.digest_realm),
        senders(u.senders),
        bool(u.disabled),
        bool(u.relay_client),
        u.require_app_passwords === undefined || u.require_app_passwords === null ? null : bool(u.require_app_passwords),
        text(u.created_at) ?? now,
        text(u.updated_at) ?? now,
      ]);
      if (result.rowCount === 1) {
        report.usersAdded++;
        added.add(key);
      } else report.usersSkipped.push(address);
    }
    for (const a of apps) {
      const key = userLoginKey(String(a.address));
      if (!added.has(key)) continue; // its user was skipped, or is gone from the file
      const result = await tx.run(ADD_APP_PASSWORD, [
        key,
        String(a.name),
        String(a.lookup_id),
        String(a.password_hash),
        text(a.created_at) ?? new Date().toISOString(),
        text(a.last_used_at),
        text(a.last_used_ip),
        blob(a.scram_salt),
        int(a.scram_iterations),
        blob(a.scram_keys),
        blob(a.cram_md5),
      ]);
      report.appPasswordsAdded += result.rowCount ?? 0;
    }
    return report;
  });
}
