/**
 * The counters shared between processes (src/server/shared-limits.ts) without processes: three
 * sets of policy objects (a primary and two workers) joined the way workers.ts joins them — a
 * worker's change goes to the primary, which applies it and passes it to the other worker. The
 * real processes are tested in test/e2e/workers.test.ts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { AuthThrottle, DEFAULT_AUTH_THROTTLE } from "../../src/policy/auth-throttle.js";
import { SendLimits } from "../../src/policy/send-limits.js";
import { ClientLimits } from "../../src/policy/client-limits.js";
import { shareLimits, type SharedLimitEvent, type SharedLimits } from "../../src/server/shared-limits.js";

const limitsConfig = { total: 1000, perIp: 3, ratePerIp: 0, rateWindowSec: 60, exempt: [] as string[] };

interface Proc {
  name: string;
  throttle: AuthThrottle;
  sendLimits: SendLimits;
  clientLimits: ClientLimits;
  shared: SharedLimits;
}

/** A primary and `n` workers, relayed synchronously (the order IPC keeps). */
function cluster(n: number, clientConfig = limitsConfig): { primary: Proc; workers: Proc[]; gone(w: Proc): void } {
  const make = (name: string, publish: (e: SharedLimitEvent) => void): Proc => {
    const throttle = new AuthThrottle({ ...DEFAULT_AUTH_THROTTLE, penaltyBaseMs: 0 });
    const sendLimits = new SendLimits({ messagesPerHour: 4, recipientsPerHour: 0 });
    const clientLimits = new ClientLimits(clientConfig, "mx.test");
    return { name, throttle, sendLimits, clientLimits, shared: shareLimits({ throttle, sendLimits, clientLimits }, publish) };
  };
  const primary = make("primary", () => undefined);
  const workers: Proc[] = [];
  for (let i = 0; i < n; i++) {
    const name = `w${i}`;
    workers.push(
      make(name, (event) => {
        primary.shared.apply(event, name);
        for (const other of workers) if (other.name !== name) other.shared.apply(event, name);
      }),
    );
  }
  const gone = (w: Proc) => {
    primary.shared.peerGone(w.name);
    for (const other of workers) if (other !== w) other.shared.peerGone(w.name);
  };
  return { primary, workers, gone };
}

test("ten AUTH failures from one IP spread over two workers lock it on both, and in the primary", () => {
  const { primary, workers } = cluster(2);
  for (let i = 0; i < 9; i++) workers[i % 2]!.throttle.failed("192.0.2.7", "john@example.org");
  for (const w of workers) assert.equal(w.throttle.checkIp("192.0.2.7").refused, false);
  const { locked } = workers[1]!.throttle.failed("192.0.2.7", "john@example.org");
  assert.deepEqual(locked, ["ip"], "the tenth failure starts the lockout, logged once, where it happened");
  for (const w of workers) assert.equal(w.throttle.checkIp("192.0.2.7").refused, true);
  assert.deepEqual(
    primary.throttle.lockedOut().map((l) => l.scope),
    ["ip", "account"],
  );
});

test("a success on one worker forgets the account's failures on every worker", () => {
  const { workers } = cluster(2);
  for (let i = 0; i < 4; i++) workers[i % 2]!.throttle.failed("192.0.2.8", "ann@example.org");
  workers[0]!.throttle.succeeded("192.0.2.8", "ann@example.org");
  // Five more from the block would lock the account; four after the success do not.
  for (let i = 0; i < 4; i++) workers[1]!.throttle.failed("192.0.2.8", "ann@example.org");
  assert.equal(workers[0]!.throttle.checkAccount("192.0.2.8", "ann@example.org").refused, false);
});

test("send limits count the user's messages from every worker", () => {
  const { workers } = cluster(2);
  for (let i = 0; i < 4; i++) {
    const w = workers[i % 2]!;
    assert.equal(w.sendLimits.checkMessage("john@example.org").allow, true);
    w.sendLimits.sent("john@example.org", 1);
  }
  for (const w of workers) assert.equal(w.sendLimits.checkMessage("john@example.org").allow, false, `refused on ${w.name}`);
});

test("connections per IP count every worker's; a worker that ends takes its connections with it", () => {
  const { workers, gone } = cluster(2);
  const [a, b] = workers as [Proc, Proc];
  const slots = [a.clientLimits.admit("192.0.2.9"), b.clientLimits.admit("192.0.2.9"), a.clientLimits.admit("192.0.2.9")];
  assert.ok(slots.every((s) => s.ok));
  const refused = b.clientLimits.admit("192.0.2.9");
  assert.ok(!refused.ok && refused.reason === "per-ip");
  // Each snapshot is its own process's (the metrics sum them).
  assert.equal(a.clientLimits.snapshot().connections, 2);
  assert.equal(b.clientLimits.snapshot().connections, 1);
  const first = slots[0]!;
  if (first.ok) first.release();
  assert.ok(b.clientLimits.admit("192.0.2.9").ok, "a release on one worker frees the slot on the other");
  gone(a);
  assert.ok(b.clientLimits.admit("192.0.2.9").ok, "worker a's remaining connection no longer counts");
});

test("the connection rate counts attempts on every worker", () => {
  const { workers } = cluster(2, { ...limitsConfig, perIp: 50, ratePerIp: 3 });
  const results = [0, 1, 0, 1].map((i) => workers[i]!.clientLimits.admit("192.0.2.10"));
  assert.deepEqual(
    results.map((r) => r.ok),
    [true, true, true, false],
  );
});
