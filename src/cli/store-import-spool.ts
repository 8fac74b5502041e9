/**
 * `postern store import-spool --spool DIR`: copies the messages queued in a file spool (a stopped
 * server's <dataDir>/queue) into the PostgreSQL queue, envelope and bytes, under their own queue
 * ids, so a node of the cluster delivers them. Idempotent by queue id: a second run (or a run cut
 * short and started again) skips what is there already. The file spool is left as it was; remove
 * it once the import is done.
 */
import { createReadStream } from "node:fs";
import { dirname } from "node:path";
import { lockDataDir } from "../queue/data-lock.js";
import { Spool } from "../queue/spool.js";
import { requireCurrentSchema } from "../store/pg/migrations.js";
import { PgQueueStore } from "../store/pg/queue.js";
import { announce, commandConfig } from "./config-source.js";
import { configuredPool } from "./store.js";

export async function storeImportSpool(opts: { config?: string; spool: string }): Promise<void> {
  const resolved = commandConfig(opts.config);
  announce(resolved);
  // The spool's server must be stopped: it could otherwise be removing what is being copied.
  const lock = lockDataDir(dirname(opts.spool));
  const pool = configuredPool(resolved.config);
  try {
    await requireCurrentSchema(pool);
    const spool = new Spool(opts.spool);
    const queue = new PgQueueStore(pool, { nodeName: `${resolved.config.store.nodeName} (import)` });
    let copied = 0;
    let skipped = 0;
    const failed: string[] = [];
    for (const id of await spool.list()) {
      try {
        const env = await spool.readEnvelope(id);
        if (await queue.importMessage(env, createReadStream(spool.messagePath(id)))) copied++;
        else skipped++;
      } catch (err) {
        failed.push(id);
        process.stderr.write(`postern: ${id}: not imported: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    }
    process.stdout.write(`imported ${copied} message${copied === 1 ? "" : "s"}, ${skipped} already in the database, ${failed.length} failed\n`);
    if (failed.length > 0) process.exitCode = 1;
  } finally {
    await pool.end();
    lock.release();
  }
}
