/**
 * The workers' lock file (src/queue/data-lock.ts): every worker adds its pid, so a primary starting
 * after a crash can find the ones still running; the file is emptied once none holds it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { holdWorkersLock, WORKERS_LOCK_NAME, waitForOldWorkers } from "../../src/queue/data-lock.js";

test("each holder's pid is appended, not written over the others'; a free lock is taken and emptied", async () => {
  const dir = await mkdtemp(join(tmpdir(), "postern-workers-lock-"));
  try {
    assert.equal(await waitForOldWorkers(dir, 1000, true), true, "nobody holds it yet");
    // Two holders (as two workers would: each its own descriptor, shared lock).
    holdWorkersLock(dir);
    holdWorkersLock(dir);
    const lines = (await readFile(join(dir, WORKERS_LOCK_NAME), "utf8")).split("\n").filter(Boolean);
    assert.deepEqual(lines, [String(process.pid), String(process.pid)]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
