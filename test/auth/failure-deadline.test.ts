/**
 * docs/SECURITY.md 11.5 (rules 13–14): a failed AUTH is answered at one deadline measured from the
 * client's last message — the configured delay minus the time the check already took — so the
 * check's cost (a hash, a dummy hash, none, or one shared with a concurrent attempt) never shows.
 * And 11.4: an exchange cancelled or cut off after the server named a login's values counts for
 * the guessing counters. AuthExchange is driven directly with a clock the test moves.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { AuthExchange } from "../../src/smtp/auth-exchange.js";
import type { SessionPorts, SessionSettings } from "../../src/smtp/session-types.js";
import type { SaslServerMechanism, SaslServerStep } from "../../src/sasl/types.js";
import { reply } from "../../src/smtp/reply.js";

const DELAY = 2000;
const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");

/** A mechanism whose checks take `costMs` of the test's clock: one step (PLAIN-like) or two (LOGIN-like). */
function rig(opts: { costMs: number; steps?: 1 | 2; penaltyMs?: number; outcome?: SaslServerStep }) {
  let now = 1_000_000;
  const delays: number[] = [];
  const guard = { failed: 0, succeeded: 0 };
  const outcome: SaslServerStep = opts.outcome ?? { kind: "failure", reason: "bad-password" };
  const mechanism = (): SaslServerMechanism => {
    let calls = 0;
    const answer = async (): Promise<SaslServerStep> => {
      calls++;
      if (calls < (opts.steps ?? 1)) return { kind: "challenge", data: Buffer.from("Password:") };
      now += opts.costMs; // the check (a hash, or none) takes this long
      return outcome;
    };
    return { name: "LOGIN", start: answer, step: answer };
  };
  const ports = {
    mechanisms: () => ["LOGIN"],
    createMechanism: () => mechanism(),
    log: { info: () => undefined, warn: () => undefined },
    now: () => new Date(now),
    delay: async (ms: number) => {
      delays.push(ms);
      now += ms;
    },
    authGuard: {
      refusal: () => null,
      failed: () => (guard.failed++, opts.penaltyMs ?? 0),
      succeeded: () => void guard.succeeded++,
    },
  } as unknown as SessionPorts;
  const settings = { limits: { authFailures: 3, authFailureDelayMs: DELAY } } as SessionSettings;
  const exchange = new AuthExchange(settings, ports, (text) => reply(421, "4.7.0", text));
  return {
    exchange,
    delays,
    guard,
    advance: (ms: number) => (now += ms),
    get now() {
      return now;
    },
  };
}

test("the delay is what is left of the deadline after the check: a 700 ms hash waits 1300 ms, no hash waits 2000 ms", async () => {
  for (const costMs of [0, 700, 1999]) {
    const r = rig({ costMs });
    const started = r.now;
    const out = await r.exchange.begin("LOGIN", b64("john@example.org"));
    assert.equal(out.output.replies[0]!.code, 535);
    assert.deepEqual(r.delays, [DELAY - costMs], `a check of ${costMs} ms`);
    assert.equal(r.now - started, DELAY, "answered at the deadline, whatever the check cost");
  }
});

test("a check slower than the deadline is answered at once after it (never before the hash is done)", async () => {
  const r = rig({ costMs: 2500 });
  const started = r.now;
  await r.exchange.begin("LOGIN", b64("john@example.org"));
  assert.deepEqual(r.delays, [0]);
  assert.equal(r.now - started, 2500);
});

test("the guard's penalty moves the deadline out by the same amount", async () => {
  const r = rig({ costMs: 300, penaltyMs: 4000 });
  await r.exchange.begin("LOGIN", b64("john@example.org"));
  assert.deepEqual(r.delays, [DELAY + 4000 - 300]);
});

test("multi-step: the deadline runs from the client's last message, so time spent before it does not shorten the wait", async () => {
  const r = rig({ costMs: 400, steps: 2 });
  await r.exchange.begin("LOGIN", undefined);
  r.advance(5000); // the client takes its time before sending the password
  const sent = r.now;
  const out = await r.exchange.respond(Buffer.from(b64("guess")));
  assert.equal(out.output.replies[0]!.code, 535);
  assert.deepEqual(r.delays, [DELAY - 400]);
  assert.equal(r.now - sent, DELAY);
});

test("a backend failure (454) is answered at the same deadline", async () => {
  const r = rig({ costMs: 250, outcome: { kind: "failure", reason: "backend-error" } });
  const out = await r.exchange.begin("LOGIN", b64("john@example.org"));
  assert.equal(out.output.replies[0]!.code, 454);
  assert.deepEqual(r.delays, [DELAY - 250]);
});

test('"*" after a challenge counts for the guessing counters (not towards the per-connection close), with no delay (11.4)', async () => {
  const r = rig({ costMs: 0, steps: 2 });
  for (let i = 0; i < 5; i++) {
    await r.exchange.begin("LOGIN", undefined);
    const out = await r.exchange.respond(Buffer.from("*"));
    assert.deepEqual(
      out.output.replies.map((x) => x.code),
      [501],
    );
    assert.equal(out.output.action, undefined, "a cancel is the client's right: no 421");
  }
  assert.equal(r.guard.failed, 5);
  assert.deepEqual(r.delays, []);
  const initial = rig({ costMs: 0 });
  await initial.exchange.begin("LOGIN", "*");
  assert.equal(initial.guard.failed, 1, "AUTH LOGIN * too");
});

test("an exchange cut off (connection gone, line error) counts once, even when its check finishes afterwards", async () => {
  const r = rig({ costMs: 0, steps: 2 });
  await r.exchange.begin("LOGIN", undefined);
  r.exchange.cancel();
  assert.equal(r.guard.failed, 1);
  r.exchange.cancel();
  assert.equal(r.guard.failed, 1, "a second cancel changes nothing");

  // Cut off while the check runs: counted by the cut, not again by the failure.
  const slow = rig({ costMs: 0, steps: 2 });
  await slow.exchange.begin("LOGIN", undefined);
  const pending = slow.exchange.respond(Buffer.from(b64("guess")));
  slow.exchange.cancel();
  const out = await pending;
  assert.deepEqual(out.output.replies, []);
  assert.equal(slow.guard.failed, 1);
  assert.deepEqual(slow.delays, []);
});

test("a success is answered at once", async () => {
  const r = rig({ costMs: 300, outcome: { kind: "success", identity: { authcid: "john@example.org", authzid: "john@example.org" } } });
  const out = await r.exchange.begin("LOGIN", b64("john@example.org"));
  assert.equal(out.output.replies[0]!.code, 235);
  assert.deepEqual(r.delays, []);
  assert.equal(r.guard.succeeded, 1);
});
