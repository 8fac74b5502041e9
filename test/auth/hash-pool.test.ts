/**
 * Slow password schemes are verified off the event loop (src/auth/hash-pool.ts): while a bcrypt of
 * cost 12 (hundreds of ms of CPU) is checked, the main thread stays idle and serves other sessions.
 * Measured with the event loop's own utilisation, which counts time spent running JavaScript on
 * this thread and not time spent waiting — so a busy machine does not change the verdict.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { randomBytes } from "node:crypto";
import { bcrypt } from "hash-wasm";
import { parseStoredPassword, verifyStoredPassword } from "../../src/auth/dovecot-schemes.js";

test("a bcrypt check (cost 12) runs on the hash pool: the event loop stays mostly idle, the verdict is right, several run at once", async () => {
  const hash = await bcrypt({ password: "right password", salt: randomBytes(16), costFactor: 12, outputType: "encoded" });
  const stored = parseStoredPassword(`{BLF-CRYPT}${hash}`)!;
  assert.equal(stored.scheme, "BLF-CRYPT");
  // Warm the pool (worker start-up and WebAssembly compilation are one-time costs on this thread).
  assert.equal(await verifyStoredPassword("right password", stored), true);

  const before = performance.eventLoopUtilization();
  const verdicts = await Promise.all([verifyStoredPassword("right password", stored), verifyStoredPassword("wrong password", stored)]);
  const used = performance.eventLoopUtilization(before);
  assert.deepEqual(verdicts, [true, false]);
  assert.ok(
    used.utilization < 0.5,
    `the event loop was busy ${(used.utilization * 100).toFixed(0)}% of ${used.idle + used.active} ms (inline bcrypt keeps it ~100% busy)`,
  );
});

test("a malformed slow-scheme value rejects (the backend reports backend-error) and the pool keeps working", async () => {
  await assert.rejects(verifyStoredPassword("x", { scheme: "SCRAM-SHA-256", data: "not,valid" }), /malformed/);
  const hash = await bcrypt({ password: "p", salt: randomBytes(16), costFactor: 4, outputType: "encoded" });
  assert.equal(await verifyStoredPassword("p", { scheme: "BLF-CRYPT", data: hash }), true);
});
