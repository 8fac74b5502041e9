/**
 * AUTH (RFC 4954) through the session with the real SASL mechanisms: every mechanism's exchange,
 * cancellation, strict base64, failures answered late and counted, a fresh mechanism per attempt
 * (SECURITY rules 9–14).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClientMechanism } from "../../src/sasl/index.js";
import { Harness, HOST, b64, codes, plain, type HarnessOptions } from "./session-helpers.js";

const ALICE = "alice@example.org";
const ALICE_PW = "alice-secret";

/** Encrypted submission listener, EHLO sent: AUTH is possible. */
async function authReady(opts: HarnessOptions = {}): Promise<Harness> {
  const h = new Harness({ mode: "submissions", ...opts });
  await h.ehlo();
  return h;
}

// ---- successful exchanges -----------------------------------------------------------------------

test("PLAIN with an initial response → 235 2.7.0 and the user is authenticated", async () => {
  const h = await authReady();
  await h.expect([`AUTH PLAIN ${plain(ALICE, ALICE_PW)}`, "235 2.7.0"]);
  assert.equal(h.session.authenticatedUser, ALICE);
  assert.ok(h.logs.some((l) => l.fields.event === "auth-success" && l.fields.user === ALICE && l.fields.mechanism === "PLAIN"));
});

test("the mechanism name is case-insensitive", async () => {
  const h = await authReady();
  await h.expect([`auth plain ${plain(ALICE, ALICE_PW)}`, "235 2.7.0"]);
});

test('PLAIN with "=" (an empty initial response) is malformed → 501 5.5.2', async () => {
  const h = await authReady();
  await h.expect(["AUTH PLAIN =", "501 5.5.2"]);
  assert.equal(h.session.authenticatedUser, null);
  assert.equal(h.session.expecting, "command");
  assert.deepEqual(h.delays, [], "a malformed message is not a guess: no delay");
});

test("PLAIN without an initial response: empty 334 challenge, then the message", async () => {
  const h = await authReady();
  const out = await h.send("AUTH PLAIN");
  assert.deepEqual(out.replies, [{ code: 334, enhanced: undefined, lines: [""] }]);
  assert.equal(h.session.expecting, "auth-response");
  await h.expect([plain(ALICE, ALICE_PW), "235 2.7.0"]);
  assert.equal(h.session.expecting, "command");
});

test("LOGIN: Username: then Password: prompts, base64-encoded", async () => {
  const h = await authReady();
  const first = await h.send("AUTH LOGIN");
  assert.deepEqual(first.replies[0]!.lines, [b64("Username:")]);
  const second = await h.send(b64(ALICE));
  assert.deepEqual(second.replies[0]!.lines, [b64("Password:")]);
  await h.expect([b64(ALICE_PW), "235 2.7.0"]);
  assert.equal(h.session.authenticatedUser, ALICE);
});

test("LOGIN with the user name as initial response goes straight to Password:", async () => {
  const h = await authReady();
  const out = await h.send(`AUTH LOGIN ${b64(ALICE)}`);
  assert.deepEqual(out.replies[0]!.lines, [b64("Password:")]);
  await h.expect([b64(ALICE_PW), "235 2.7.0"]);
});

test("CRAM-MD5: the challenge names our host; our client's answer is accepted", async () => {
  const h = await authReady();
  const out = await h.send("AUTH CRAM-MD5");
  assert.equal(out.replies[0]!.code, 334);
  assert.match(Buffer.from(out.replies[0]!.lines[0]!, "base64").toString(), new RegExp(`^<\\d+\\.\\d+@${HOST.replace(/\./g, "\\.")}>$`));
  const h2 = await authReady();
  assert.equal(await h2.saslExchange("CRAM-MD5", ALICE, ALICE_PW), "235 2.7.0");
  assert.equal(h2.session.authenticatedUser, ALICE);
});

test("CRAM-MD5 with an initial response is malformed → 501 5.5.2", async () => {
  const h = await authReady();
  await h.expect([`AUTH CRAM-MD5 ${b64("alice 0123")}`, "501 5.5.2"]);
});

for (const withInitial of [true, false]) {
  test(`SCRAM-SHA-256 full exchange with our client (${withInitial ? "client-first as initial response" : "after an empty 334"})`, async () => {
    const h = await authReady();
    assert.equal(await h.saslExchange("SCRAM-SHA-256", ALICE, ALICE_PW, withInitial), "235 2.7.0");
    assert.equal(h.session.authenticatedUser, ALICE);
  });
}

test("SCRAM-SHA-256: the server-final (v=) is sent as a 334 and the empty answer completes", async () => {
  const h = await authReady();
  const client = createClientMechanism("SCRAM-SHA-256", { username: ALICE, password: ALICE_PW })!;
  const first = await h.send(`AUTH SCRAM-SHA-256 ${b64(client.initial()!)}`);
  const serverFirst = Buffer.from(first.replies[0]!.lines[0]!, "base64").toString();
  assert.match(serverFirst, /^r=[^,]+,s=[A-Za-z0-9+/=]+,i=4096$/);
  const final = await h.send(b64(client.respond(Buffer.from(serverFirst))));
  assert.equal(final.replies[0]!.code, 334);
  const serverFinal = Buffer.from(final.replies[0]!.lines[0]!, "base64");
  assert.match(serverFinal.toString(), /^v=/);
  assert.deepEqual(client.respond(serverFinal), Buffer.alloc(0), "our client verified the server signature");
  assert.equal(h.session.authenticatedUser, null, "not authenticated before the client acknowledges");
  await h.expect(["", "235 2.7.0"]);
});

for (const mechanism of ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"]) {
  test(`${mechanism} with a wrong password → 535 5.7.8 after the configured delay`, async () => {
    const h = await authReady({ limits: { authFailureDelayMs: 1234 } });
    assert.equal(await h.saslExchange(mechanism, ALICE, "wrong"), "535 5.7.8");
    assert.deepEqual(h.delays, [1234]);
    assert.equal(h.session.authenticatedUser, null);
    assert.ok(h.logs.some((l) => l.fields.event === "auth-failure" && l.fields.reason === "bad-password"));
  });

  test(`${mechanism} for an unknown user answers exactly like a wrong password (no oracle)`, async () => {
    const unknown = await authReady();
    const wrong = await authReady();
    const a = await unknown.saslExchange(mechanism, "nobody@example.org", "x");
    const b = await wrong.saslExchange(mechanism, ALICE, "x");
    assert.equal(a, b);
    assert.deepEqual(unknown.delays, wrong.delays);
  });
}

test("PLAIN with an authzid naming another user → 535 5.7.8 (authzid not permitted)", async () => {
  const h = await authReady();
  await h.expect([`AUTH PLAIN ${plain(ALICE, ALICE_PW, "bob@example.org")}`, "535 5.7.8"]);
  assert.equal(h.session.authenticatedUser, null);
});

test("PLAIN with the authzid equal to the authcid is accepted", async () => {
  const h = await authReady();
  await h.expect([`AUTH PLAIN ${plain(ALICE, ALICE_PW, ALICE)}`, "235 2.7.0"]);
});

test("a credential backend failure → 454 4.7.0 (temporary), after the delay", async () => {
  const h = await authReady();
  h.verifier.broken = true;
  await h.expect([`AUTH PLAIN ${plain(ALICE, ALICE_PW)}`, "454 4.7.0"]);
  assert.deepEqual(h.delays, [2000]);
});

// ---- cancellation and malformed input -------------------------------------------------------------

test('"*" at a 334 cancels → 501 5.7.0 and the next line is a command again', async () => {
  const h = await authReady();
  await h.expect(["AUTH LOGIN", "334"], ["*", "501 5.7.0"]);
  assert.equal(h.session.expecting, "command");
  await h.expect(["NOOP", "250 2.0.0"]);
});

test('"*" as the initial response cancels → 501 5.7.0', async () => {
  const h = await authReady();
  await h.expect(["AUTH PLAIN *", "501 5.7.0"]);
  assert.equal(h.session.expecting, "command");
});

for (const [bad, why] of [
  ["AHVzZXIAcGFzcw", "length not a multiple of 4"],
  ["AHVzZXIAcGFzcw=!", "character outside the alphabet"],
  ["QR==", "non-zero padding bits"],
  ["QUJD QUJD", "space inside"],
]) {
  test(`bad base64 in a response (${why}) → 501 5.5.2 and the exchange ends`, async () => {
    const h = await authReady();
    await h.expect(["AUTH PLAIN", "334"], [bad, "501 5.5.2"]);
    assert.equal(h.session.expecting, "command");
  });
}

test("bad base64 as the initial response → 501 5.5.2", async () => {
  const h = await authReady();
  await h.expect(["AUTH PLAIN AHVzZXIAcGFzcw", "501 5.5.2"]);
  assert.equal(h.session.expecting, "command");
});

for (const name of ["XOAUTH2", "GSSAPI", "DIGEST-MD5"]) {
  test(`AUTH ${name} (not offered) → 504 5.5.4`, async () => {
    const h = await authReady();
    await h.expect([`AUTH ${name}`, "504 5.5.4"]);
    assert.equal(h.mechanismsCreated.length, 0);
  });
}

test("AUTH after a successful AUTH → 503 5.5.1", async () => {
  const h = await authReady();
  await h.login();
  await h.expect([`AUTH PLAIN ${plain("bob@example.org", "bob-secret")}`, "503 5.5.1"]);
  assert.equal(h.session.authenticatedUser, ALICE);
});

test("AUTH during a mail transaction → 503 5.5.1", async () => {
  const h = new Harness({ mode: "mta", tls: true });
  await h.ehlo();
  await h.expect(["MAIL FROM:<>", "250 2.1.0"], [`AUTH PLAIN ${plain(ALICE, ALICE_PW)}`, "503 5.5.1"]);
  assert.equal(h.session.authenticatedUser, null);
});

test("AUTH after HELO (not EHLO) → 503 5.5.1", async () => {
  const h = new Harness({ mode: "submissions" });
  await h.expect(["HELO client.example.net", "250"], [`AUTH PLAIN ${plain(ALICE, ALICE_PW)}`, "503 5.5.1"]);
});

// ---- limits -------------------------------------------------------------------------------------

test("after authFailures failed attempts: 535 then 421 4.7.0 and close", async () => {
  const h = await authReady({ limits: { authFailures: 3 } });
  const wrong = `AUTH PLAIN ${plain(ALICE, "guess")}`;
  await h.expect([wrong, "535 5.7.8"], [wrong, "535 5.7.8"], [wrong, "535 5.7.8 | 421 4.7.0 | +close"]);
  assert.deepEqual(h.delays, [2000, 2000, 2000]);
  assert.deepEqual(await h.send(`AUTH PLAIN ${plain(ALICE, ALICE_PW)}`), { replies: [] }, "nothing after the close");
});

test("failures with different mechanisms add up to the same limit", async () => {
  const h = await authReady({ limits: { authFailures: 3 } });
  assert.equal(await h.saslExchange("SCRAM-SHA-256", ALICE, "x"), "535 5.7.8");
  assert.equal(await h.saslExchange("LOGIN", ALICE, "x"), "535 5.7.8");
  assert.equal(await h.saslExchange("CRAM-MD5", ALICE, "x"), "535 5.7.8 | 421 4.7.0 | +close");
});

test("lineLimit is authLineLength during an exchange and commandLineLength otherwise", async () => {
  const h = await authReady({ limits: { commandLineLength: 600, authLineLength: 20000 } });
  assert.equal(h.session.lineLimit, 600);
  assert.equal(h.session.expecting, "command");
  await h.send("AUTH LOGIN");
  assert.equal(h.session.lineLimit, 20000);
  assert.equal(h.session.expecting, "auth-response");
  await h.send(b64(ALICE));
  assert.equal(h.session.lineLimit, 20000);
  await h.send(b64(ALICE_PW));
  assert.equal(h.session.lineLimit, 600);
  assert.equal(h.session.expecting, "command");
});

test("an over-long line during an exchange ends it: 500 5.5.2 and close", async () => {
  const h = await authReady();
  await h.send("AUTH PLAIN");
  const out = h.session.lineError("too-long");
  assert.deepEqual([codes(out), out.action], [["500 5.5.2"], "close"]);
  assert.equal(h.session.expecting, "command");
});

test("a fresh mechanism object per attempt; nothing carries over after a failure", async () => {
  const h = await authReady();
  // LOGIN: give the user name, then fail with a wrong password.
  await h.expect(["AUTH LOGIN", "334"], [b64(ALICE), "334"], [b64("wrong"), "535 5.7.8"]);
  // A new LOGIN must start from the user name again, not jump to the password.
  const again = await h.send("AUTH LOGIN");
  assert.deepEqual(again.replies[0]!.lines, [b64("Username:")]);
  await h.expect([b64("bob@example.org"), "334"], [b64("bob-secret"), "235 2.7.0"]);
  assert.equal(h.session.authenticatedUser, "bob@example.org");
  assert.equal(h.mechanismsCreated.length, 2);
  assert.notEqual(h.mechanismsCreated[0], h.mechanismsCreated[1]);
});

test("after a cancelled SCRAM exchange a PLAIN attempt starts clean", async () => {
  const h = await authReady();
  const client = createClientMechanism("SCRAM-SHA-256", { username: ALICE, password: ALICE_PW })!;
  await h.expect([`AUTH SCRAM-SHA-256 ${b64(client.initial()!)}`, "334"], ["*", "501 5.7.0"]);
  await h.expect([`AUTH PLAIN ${plain("bob@example.org", "bob-secret")}`, "235 2.7.0"]);
  assert.equal(h.session.authenticatedUser, "bob@example.org");
  assert.equal(h.mechanismsCreated.length, 2);
});

test("a SCRAM client-final replayed into a new exchange fails (nonce differs)", async () => {
  const h = await authReady();
  const client = createClientMechanism("SCRAM-SHA-256", { username: ALICE, password: ALICE_PW })!;
  const initial = b64(client.initial()!);
  const first = await h.send(`AUTH SCRAM-SHA-256 ${initial}`);
  const clientFinal = b64(client.respond(Buffer.from(first.replies[0]!.lines[0]!, "base64")));
  await h.send("*");
  await h.expect([`AUTH SCRAM-SHA-256 ${initial}`, "334"], [clientFinal, "501 5.5.2"]);
  assert.equal(h.session.authenticatedUser, null);
});

test("the 501 for a cancelled exchange counts as an error but not as an AUTH failure", async () => {
  const h = await authReady({ limits: { authFailures: 3 } });
  for (let i = 0; i < 5; i++) await h.expect(["AUTH LOGIN", "334"], ["*", "501 5.7.0"]);
  await h.login();
});
