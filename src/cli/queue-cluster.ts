/**
 * `postern queue …` on a cluster (`store.backend: postgres`) when no server runs on this machine:
 * the queue is in the database, so the command reads and changes it there, every change under
 * the message's lease (src/queue/store-admin.ts).
 */
import type { Config } from "../config/schema.js";
import { StoreQueueAdmin } from "../queue/store-admin.js";
import type { ControlRequest } from "../server/control.js";
import { requireCurrentSchema } from "../store/pg/migrations.js";
import { openPgPool } from "../store/pg/pool.js";
import { PgQueueStore } from "../store/pg/queue.js";

export async function clusterQueueRequest(config: Config, req: ControlRequest): Promise<unknown> {
  const pool = openPgPool(config.store);
  try {
    await requireCurrentSchema(pool);
    const admin = new StoreQueueAdmin(new PgQueueStore(pool, { nodeName: `${config.store.nodeName} (postern queue)` }), config.store.leaseSec * 1000);
    const id = () => {
      if (req.id === undefined) throw new Error("a queue id is required");
      return req.id;
    };
    switch (req.op) {
      case "list":
        return await admin.list();
      case "show":
        return await admin.show(id());
      case "flush":
        return await admin.flush(req.id);
      case "hold":
        return await admin.hold(id()).then(() => ({}));
      case "release":
        return await admin.release(id()).then(() => ({}));
      case "delete":
        return await admin.delete(id()).then(() => ({}));
      case "delete-deferred":
        return await admin.deleteDeferred();
      default:
        throw new Error(`unknown operation: ${JSON.stringify((req as { op?: unknown }).op)}`);
    }
  } finally {
    await pool.end();
  }
}
