/**
 * Slow password schemes (bcrypt, Argon2, SHA-crypt, MD5-crypt, SCRAM's PBKDF2) verified off the
 * event loop. hash-wasm and our crypt code run synchronously: one bcrypt of cost 12 holds the loop
 * for ~300 ms, during which no other session reads a byte — a guesser with a few connections could
 * stall every client, and the "one deadline for every failed AUTH" (docs/SECURITY.md 11.5) would be
 * measured from a late read. scrypt already runs on libuv's pool (node:crypto), so it stays there.
 *
 * A small pool of worker threads, started on first use and unref'd (an idle pool never keeps the
 * process alive); jobs queue FIFO when every worker is busy.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";

/**
 * What the worker needs of a stored password: structural, so this pool does not import the scheme
 * table (dovecot-schemes.ts calls verifyOnPool; importing it back would be a cycle).
 */
export interface PooledPassword {
  scheme: string;
  data: string;
}

interface Job {
  id: number;
  password: string;
  stored: PooledPassword;
}
type Reply = { id: number; ok: boolean } | { id: number; error: string };

interface PoolWorker {
  worker: Worker;
  busy: number | undefined;
}

const POOL_SIZE = Math.max(1, Math.min(4, availableParallelism()));
const workers: PoolWorker[] = [];
const waiting: Job[] = [];
const pending = new Map<number, { resolve: (ok: boolean) => void; reject: (err: Error) => void }>();
let nextId = 1;

function spawnWorker(): PoolWorker {
  const entry: PoolWorker = { worker: new Worker(new URL("./hash-worker.js", import.meta.url)), busy: undefined };
  entry.worker.unref();
  entry.worker.on("message", (reply: Reply) => {
    entry.busy = undefined;
    entry.worker.unref();
    const p = pending.get(reply.id);
    pending.delete(reply.id);
    if (p) "error" in reply ? p.reject(new Error(reply.error)) : p.resolve(reply.ok);
    dispatch();
  });
  // A worker that dies (out of memory, a bug) fails its job, not the server; a new one replaces it.
  entry.worker.on("error", (err) => {
    workers.splice(workers.indexOf(entry), 1);
    if (entry.busy !== undefined) {
      pending.get(entry.busy)?.reject(err);
      pending.delete(entry.busy);
    }
    dispatch();
  });
  workers.push(entry);
  return entry;
}

function dispatch(): void {
  while (waiting.length > 0) {
    const idle = workers.find((w) => w.busy === undefined) ?? (workers.length < POOL_SIZE ? spawnWorker() : undefined);
    if (!idle) return;
    const job = waiting.shift()!;
    idle.busy = job.id;
    // A job in flight keeps the process alive until its answer, as any pending I/O does.
    idle.worker.ref();
    idle.worker.postMessage(job);
  }
}

/** The stored password's verdict, computed on a worker thread. Rejects on a malformed value. */
export function verifyOnPool(password: string, stored: PooledPassword): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    waiting.push({ id, password, stored });
    dispatch();
  });
}
