/** A hash-pool worker thread: verifies one stored password per message (see hash-pool.ts). */
import { parentPort } from "node:worker_threads";
import { verifyStoredPasswordHere, type StoredPassword } from "./dovecot-schemes.js";

parentPort!.on("message", async (job: { id: number; password: string; stored: StoredPassword }) => {
  try {
    parentPort!.postMessage({ id: job.id, ok: await verifyStoredPasswordHere(job.password, job.stored) });
  } catch (err) {
    parentPort!.postMessage({ id: job.id, error: String(err instanceof Error ? err.message : err) });
  }
});
