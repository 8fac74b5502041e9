/**
 * The built-in user store for a configuration: the SQLite file in dataDir (`store.backend: sqlite`,
 * the default) or the shared PostgreSQL (`postgres`). Commands (`postern user …`) open their own;
 * the server passes its node's pool.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { SqliteUserStore } from "../auth/sqlite-store.js";
import type { Authenticator } from "../auth/types.js";
import type { UserStoreAdmin } from "../auth/user-store-rules.js";
import type { Config } from "../config/schema.js";
import { requireCurrentSchema } from "./pg/migrations.js";
import { openPgPool, type PgPool } from "./pg/pool.js";
import { PgUserStore } from "./pg/users.js";

export type UserStore = Authenticator & UserStoreAdmin & { hasUser(user: string): boolean };

export interface OpenedUserStore {
  store: UserStore;
  /** Closes the store, and the pool when it opened one. */
  close(): Promise<void>;
}

export async function openUserStore(config: Config, opts: { pool?: PgPool; cacheTtlSec?: number } = {}): Promise<OpenedUserStore> {
  const common = {
    hostname: config.hostname,
    requireAppPasswords: config.auth.requireAppPasswords,
    ...(opts.cacheTtlSec !== undefined ? { cacheTtlSec: opts.cacheTtlSec } : {}),
  };
  if (config.store.backend === "postgres") {
    const pool = opts.pool ?? openPgPool(config.store);
    const ownPool = opts.pool === undefined;
    try {
      await requireCurrentSchema(pool);
    } catch (err) {
      if (ownPool) await pool.end();
      throw err;
    }
    const store = new PgUserStore({ pool, ...common });
    return {
      store,
      close: async () => {
        store.close();
        if (ownPool) await pool.end();
      },
    };
  }
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const store = new SqliteUserStore({ path: join(config.dataDir, "users.sqlite"), ...common });
  return { store, close: async () => store.close() };
}
