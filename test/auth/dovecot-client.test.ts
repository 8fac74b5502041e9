/**
 * The Dovecot auth-protocol client against a real `dovecot -F` (passwd-file passdb with
 * SCRAM-SHA-256 hashes): mechanisms from the handshake, SCRAM-SHA-256 and PLAIN passed through.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { DovecotAuthClient, tabEscape, tabUnescape } from "../../src/auth/dovecot-client.js";
import { DovecotMechanism } from "../../src/auth/dovecot-mechanism.js";
import { ScramSha256Client } from "../../src/sasl/scram-sha-256.js";
import type { SaslServerStep } from "../../src/sasl/types.js";
import { doveadmPw, startDovecot, type Daemon } from "./helpers/daemons.js";

const ALICE = { user: "alice@example.net", password: "alice's secret" };
let dovecot: Daemon;
let client: DovecotAuthClient;

before(async () => {
  dovecot = await startDovecot([`${ALICE.user}:${doveadmPw("SCRAM-SHA-256", ALICE.password)}`]);
  client = new DovecotAuthClient({ socket: `unix:${dovecot.socket}`, service: "smtp", timeoutMs: 5000 });
  client.start();
  await client.whenReady();
});
after(async () => {
  client?.close();
  await dovecot?.stop();
});

test("mechanisms come from Dovecot's handshake", () => {
  assert.deepEqual([...client.mechanisms()].sort(), ["LOGIN", "PLAIN", "SCRAM-SHA-256"]);
});

async function scram(password: string): Promise<SaslServerStep> {
  const mech = new DovecotMechanism("SCRAM-SHA-256", client, { remoteIp: "192.0.2.1" });
  const c = new ScramSha256Client({ username: ALICE.user, password });
  let step = await mech.start(c.initial());
  while (step.kind === "challenge") {
    let answer: Buffer;
    try {
      answer = c.respond(step.data);
    } catch {
      answer = Buffer.alloc(0); // our client rejects the server-final only when it is wrong
    }
    step = await mech.step(answer);
  }
  return step;
}

test("SCRAM-SHA-256 passes through: right password succeeds (server signature checked by our client)", async () => {
  const step = await scram(ALICE.password);
  assert.deepEqual(step, { kind: "success", identity: { authcid: ALICE.user, authzid: ALICE.user } });
});

test("SCRAM-SHA-256 with a wrong password fails as bad-password", async () => {
  const step = await scram("wrong");
  assert.equal(step.kind, "failure");
  assert.equal(step.kind === "failure" && step.reason, "bad-password");
});

test("PLAIN passes through with an initial response", async () => {
  const ok = await new DovecotMechanism("PLAIN", client, {}).start(Buffer.from(`\0${ALICE.user}\0${ALICE.password}`));
  assert.equal(ok.kind, "success");
  const bad = await new DovecotMechanism("PLAIN", client, {}).start(Buffer.from(`\0nobody@example.net\0x`));
  assert.equal(bad.kind === "failure" && bad.reason, "bad-password");
});

test("tab-escaping round-trips the separators (SECURITY.md rule 15)", () => {
  const nasty = "a\tb\nc\rd\x01e\x00f";
  assert.doesNotMatch(tabEscape(nasty), /[\t\n\r\x00]/);
  assert.equal(tabUnescape(tabEscape(nasty)), nasty);
});

test("an unreachable Dovecot never blocks: no mechanisms, and an exchange is backend-error", async () => {
  const dead = new DovecotAuthClient({ socket: `unix:${dovecot.dir}/nope`, service: "smtp", timeoutMs: 300 });
  dead.start();
  try {
    assert.deepEqual(dead.mechanisms(), []);
    const step = await new DovecotMechanism("PLAIN", dead, {}).start(Buffer.from("\0a\0b"));
    assert.equal(step.kind === "failure" && step.reason, "backend-error");
  } finally {
    dead.close();
  }
});
