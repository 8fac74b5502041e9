/** The saslauthd client against a real `saslauthd -a shadow` and a system user made for the test. */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { SaslauthdAuthenticator } from "../../src/auth/saslauthd.js";
import { createSystemUser, startSaslauthd, type Daemon } from "./helpers/daemons.js";

const PASSWORD = "Sasl-Pass 123";
let daemon: Daemon;
let user: { name: string; remove(): void };

before(async () => {
  user = createSystemUser(PASSWORD);
  daemon = await startSaslauthd();
});
after(async () => {
  await daemon?.stop();
  user?.remove();
});

test("the right password is OK, a wrong one and an unknown user are both NO (saslauthd does not say which)", async () => {
  const auth = new SaslauthdAuthenticator({ socket: daemon.socket, service: "smtp" });
  assert.deepEqual(await auth.verifyPassword(user.name, PASSWORD), { ok: true, user: user.name });
  const wrong = await auth.verifyPassword(user.name, "wrong");
  assert.equal(wrong.ok, false);
  assert.equal(!wrong.ok && wrong.reason, "bad-password");
  const unknown = await auth.verifyPassword("nosuchuser-x", PASSWORD);
  assert.equal(!unknown.ok && unknown.reason, "bad-password");
  await daemon.waitForOutput(new RegExp(`auth success: \\[user=${user.name}\\] \\[service=smtp\\]`));
});

test("empty user or password never reaches saslauthd (SECURITY.md rule 15)", async () => {
  const auth = new SaslauthdAuthenticator({ socket: daemon.socket, service: "smtp" });
  // A request that goes through shows up in saslauthd's debug log, in order (one worker, -n 1):
  // marker requests bracket the two that must not go through, and each is awaited in the log.
  await auth.verifyPassword("marker-before", "x");
  await daemon.waitForOutput(/\[user=marker-before\]/);
  const before = daemon.stderr().length;
  assert.equal((await auth.verifyPassword(user.name, "")).ok, false);
  assert.equal((await auth.verifyPassword("", PASSWORD)).ok, false);
  await auth.verifyPassword("marker-after", "x");
  await daemon.waitForOutput(/\[user=marker-after\]/);
  const between = daemon.stderr().slice(before);
  assert.deepEqual(between.match(/auth (success|failure): \[user=[^\]]*\]/g), ["auth failure: [user=marker-after]"]);
});

test("a missing socket is backend-error (→ 454), and a silent peer times out", async () => {
  const missing = new SaslauthdAuthenticator({ socket: `${daemon.dir}/nope`, service: "smtp", timeoutMs: 500 });
  const r = await missing.verifyPassword(user.name, PASSWORD);
  assert.equal(!r.ok && r.reason, "backend-error");
  const { createServer } = await import("node:net");
  const silent = createServer(() => undefined);
  const path = `${daemon.dir}/silent`;
  await new Promise<void>((ok) => silent.listen(path, ok));
  try {
    const started = Date.now();
    const t = await new SaslauthdAuthenticator({ socket: path, service: "smtp", timeoutMs: 300 }).verifyPassword(user.name, PASSWORD);
    assert.equal(!t.ok && t.reason, "backend-error");
    assert.ok(Date.now() - started < 3000);
  } finally {
    silent.close();
  }
});
