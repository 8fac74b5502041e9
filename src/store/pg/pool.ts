/**
 * One connection pool per node to the shared PostgreSQL (`store.backend: postgres`). Every query
 * goes through a named statement (pg's `{ name, text, values }`): each connection parses and plans
 * it once, then only binds values. Users, counters and the queue share this pool.
 */
import pg from "pg";
import type { InfoWarnLog } from "../../base/log.js";

/** A named prepared statement: one name, one text, forever (pg caches it per connection by name). */
export interface PgStatement {
  readonly name: string;
  readonly text: string;
}

/** Declares a statement; the name is checked once here so two texts never share it. */
const declared = new Map<string, string>();
export function statement(name: string, text: string): PgStatement {
  const before = declared.get(name);
  if (before !== undefined && before !== text) throw new Error(`prepared statement ${name} declared twice with different text`);
  declared.set(name, text);
  return { name, text };
}

/** Something statements run on: the pool (any connection) or one transaction's connection. */
export interface PgRunner {
  run<R extends pg.QueryResultRow = pg.QueryResultRow>(stmt: PgStatement, values?: readonly unknown[]): Promise<pg.QueryResult<R>>;
  /** Plain text, unnamed: DDL in migrations, SET, LOCK; never with values from outside. */
  exec(sql: string): Promise<void>;
}

function runnerOf(target: pg.Pool | pg.PoolClient): PgRunner {
  return {
    run: <R extends pg.QueryResultRow>(stmt: PgStatement, values: readonly unknown[] = []) =>
      target.query<R>({ name: stmt.name, text: stmt.text, values: values as unknown[] }),
    exec: async (sql: string) => {
      await target.query(sql);
    },
  };
}

export interface PgPoolOptions {
  url: string;
  poolSize?: number;
  /** Shown in pg_stat_activity: which node holds a connection. */
  applicationName?: string;
  log?: InfoWarnLog;
}

/**
 * Per session, a COMMIT that returns is flushed to the WAL: `off` (from the server, database or
 * role defaults) becomes `on`; any other value (`on`, `remote_apply`, … for a synchronous standby)
 * is kept. Set at session level, so a later reload of the server's configuration cannot turn it off
 * under a running node.
 */
const PIN_SYNCHRONOUS_COMMIT =
  "SELECT set_config('synchronous_commit', CASE current_setting('synchronous_commit') WHEN 'off' THEN 'on' ELSE current_setting('synchronous_commit') END, false)";

export type IsolationLevel = "read committed" | "repeatable read" | "serializable";

export class PgPool implements PgRunner {
  readonly pool: pg.Pool;
  private closed = false;

  constructor(opts: PgPoolOptions) {
    this.pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.poolSize ?? 10,
      application_name: opts.applicationName ?? "postern",
    });
    // An idle connection that dies (server restart, network) is an 'error' event: without a
    // listener it would end the process; the pool drops that connection and opens a new one.
    this.pool.on("error", (err) => opts.log?.warn({ err: err.message }, "postgres: idle connection lost"));
    // Runs before the connection's first query (pg queues them in order): see PIN_SYNCHRONOUS_COMMIT.
    this.pool.on("connect", (client) => {
      client.query(PIN_SYNCHRONOUS_COMMIT).catch((err: Error) => opts.log?.warn({ err: err.message }, "postgres: could not pin synchronous_commit"));
    });
  }

  run<R extends pg.QueryResultRow = pg.QueryResultRow>(stmt: PgStatement, values: readonly unknown[] = []): Promise<pg.QueryResult<R>> {
    return this.pool.query<R>({ name: stmt.name, text: stmt.text, values: values as unknown[] });
  }

  async exec(sql: string): Promise<void> {
    await this.pool.query(sql);
  }

  /**
   * Runs fn inside BEGIN … COMMIT on one connection; any throw rolls back and rethrows. COMMIT
   * returning means the transaction is durable (synchronous_commit on).
   */
  async withTransaction<T>(fn: (tx: PgRunner) => Promise<T>, isolation: IsolationLevel = "read committed"): Promise<T> {
    const client = await this.pool.connect();
    let broken = false;
    try {
      await client.query(`BEGIN ISOLATION LEVEL ${isolation.toUpperCase()}`);
      const result = await fn(runnerOf(client));
      await client.query("COMMIT");
      return result;
    } catch (err) {
      try {
        await client.query("ROLLBACK");
      } catch {
        broken = true; // the connection is gone or confused: do not hand it to the next caller
      }
      throw err;
    } finally {
      client.release(broken);
    }
  }

  async end(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

/** The node's pool from `store` config (backend postgres). */
export function openPgPool(store: { url?: string; poolSize: number; nodeName: string }, log?: InfoWarnLog): PgPool {
  if (!store.url) throw new Error("store.url is required with backend postgres");
  return new PgPool({ url: store.url, poolSize: store.poolSize, applicationName: `postern ${store.nodeName}`.slice(0, 63), log });
}

/** PostgreSQL error codes we act on (Appendix A of the PostgreSQL manual). */
export const PG_UNIQUE_VIOLATION = "23505";
export const PG_SERIALIZATION_FAILURE = "40001";

export function pgErrorCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "string" ? err.code : undefined;
}
