/**
 * Wiring: which QueueStore the node uses. `store.backend: sqlite` (the default): the file spool in
 * <dataDir>/queue, owned by this node alone. `store.backend: postgres`: the queue in the shared
 * database (src/store/pg/queue.ts), so any node delivers any message; its runner then polls the
 * database for due work (store.pollMs) and holds leases of store.leaseSec, renewed every third of it.
 */
import { join } from "node:path";
import type { Config } from "../config/schema.js";
import type { Log } from "../base/log.js";
import { Spool, type RecoveryReport } from "../queue/spool.js";
import type { SpoolFault } from "../queue/spool-writer.js";
import type { QueueStore } from "../queue/store.js";
import { openPgPool, type PgPool } from "../store/pg/pool.js";
import { requireCurrentSchema } from "../store/pg/migrations.js";
import { PgQueueStore } from "../store/pg/queue.js";

export interface QueueStoreHandle extends QueueStore {
  /** Recovery of the file spool (its report), or the database's checks; run once, by the queue's owner. */
  init(): Promise<RecoveryReport | undefined>;
  close(): Promise<void>;
  /** For a start that fails at init(): the setting to blame, what failed, and a fix (else dataDir's). */
  readonly startup: { key: string; what: string; fix?: string };
  /** What the queue runner needs to know of this store (lease length, polling). */
  readonly runnerOptions: { leaseMs?: number; pollMs?: number };
}

class SpoolHandle extends Spool implements QueueStoreHandle {
  readonly runnerOptions = {};
  readonly startup = { key: "dataDir", what: `cannot open the queue ${this.dir}` };
}

class PgHandle extends PgQueueStore implements QueueStoreHandle {
  constructor(
    db: PgPool,
    private readonly ownsPool: boolean,
    opts: ConstructorParameters<typeof PgQueueStore>[1],
    readonly runnerOptions: { leaseMs: number; pollMs: number },
  ) {
    super(db, opts);
  }

  readonly startup = {
    key: "store.url",
    what: "cannot open the queue in PostgreSQL",
    fix: "check that store.url reaches the database, and run `postern store migrate` once",
  };

  override async init(): Promise<undefined> {
    await requireCurrentSchema(this.db);
    await super.init();
    return undefined;
  }

  override async close(): Promise<void> {
    await super.close();
    if (this.ownsPool) await this.db.end();
  }
}

/**
 * The node's queue store. `pool`: the node's PostgreSQL pool when the caller has one (users and
 * counters use it too); otherwise the store opens its own from `store`.
 */
export function openQueueStore(config: Config, log: Log, fault?: SpoolFault, pool?: PgPool): QueueStoreHandle {
  if (config.store.backend !== "postgres") {
    return new SpoolHandle(join(config.dataDir, "queue"), { fsync: config.queue.fsync, logger: log, fault });
  }
  const leaseMs = config.store.leaseSec * 1000;
  return new PgHandle(
    pool ?? openPgPool(config.store, log),
    pool === undefined,
    { nodeName: config.store.nodeName, renewEveryMs: Math.max(Math.floor(leaseMs / 3), 100), logger: log },
    { leaseMs, pollMs: config.store.pollMs },
  );
}
