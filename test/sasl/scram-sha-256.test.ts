import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { decodeSaslName, encodeSaslName, ScramSha256Client, ScramSha256Server } from "../../src/sasl/scram-sha-256.js";
import { deriveScramSha256 } from "../../src/sasl/secrets.js";
import type { SaslServerStep } from "../../src/sasl/types.js";
import { bytes, MemoryVerifier, runExchange, serverOptions } from "./helpers.js";

// RFC 7677 §3 test vector.
const CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SALT = Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64");
const CLIENT_FIRST = `n,,n=user,r=${CLIENT_NONCE}`;
const SERVER_FIRST = `r=${CLIENT_NONCE}${SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`;
const CLIENT_FINAL = `c=biws,r=${CLIENT_NONCE}${SERVER_NONCE},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=`;
const SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

function rfcVerifier(): MemoryVerifier {
  const verifier = new MemoryVerifier({ user: "pencil", "a,b=c": "pencil" });
  verifier.setScram("user", deriveScramSha256("pencil", SALT, 4096));
  return verifier;
}
const rfcServer = (verifier = rfcVerifier(), overrides = {}) => new ScramSha256Server(serverOptions(verifier, overrides), { serverNonce: SERVER_NONCE });
const reason = (step: SaslServerStep) => (step.kind === "failure" ? step.reason : step.kind);

test("RFC 7677 §3: client messages match the vector and it verifies the server signature", () => {
  const client = new ScramSha256Client({ username: "user", password: "pencil" }, { clientNonce: CLIENT_NONCE });
  assert.equal(client.initial().toString(), CLIENT_FIRST);
  assert.equal(client.respond(bytes(SERVER_FIRST)).toString(), CLIENT_FINAL);
  assert.deepEqual(client.respond(bytes(SERVER_FINAL)), Buffer.alloc(0));
});

test("RFC 7677 §3: server messages match the vector; server-final is a challenge, success after the empty reply", async () => {
  const server = rfcServer();
  assert.deepEqual(await server.start(bytes(CLIENT_FIRST)), { kind: "challenge", data: bytes(SERVER_FIRST) });
  assert.deepEqual(await server.step(bytes(CLIENT_FINAL)), { kind: "challenge", data: bytes(SERVER_FINAL) });
  assert.deepEqual(await server.step(Buffer.alloc(0)), { kind: "success", identity: { authcid: "user", authzid: "user" } });
});

test("client throws when the server signature is wrong or the server reports an error", () => {
  const tampered = new ScramSha256Client({ username: "user", password: "pencil" }, { clientNonce: CLIENT_NONCE });
  tampered.initial();
  tampered.respond(bytes(SERVER_FIRST));
  assert.throws(() => tampered.respond(bytes("v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")), /signature mismatch/);
  const refused = new ScramSha256Client({ username: "user", password: "pencil" }, { clientNonce: CLIENT_NONCE });
  refused.initial();
  refused.respond(bytes(SERVER_FIRST));
  assert.throws(() => refused.respond(bytes("e=invalid-proof")), /server error invalid-proof/);
});

test("client refuses a server nonce that does not extend its own, and weak iteration counts", () => {
  const client = () => {
    const c = new ScramSha256Client({ username: "user", password: "pencil" }, { clientNonce: CLIENT_NONCE });
    c.initial();
    return c;
  };
  assert.throws(() => client().respond(bytes("r=someoneElse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")), /nonce/);
  assert.throws(() => client().respond(bytes(`r=${CLIENT_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`)), /nonce/);
  assert.throws(() => client().respond(bytes(`r=${CLIENT_NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1`)), /iteration/);
});

test("round trips: with and without initial response, authzid, escaped user name", async () => {
  const verifier = rfcVerifier();
  for (const useInitialResponse of [true, false]) {
    const step = await runExchange(new ScramSha256Server(serverOptions(verifier)), new ScramSha256Client({ username: "user", password: "pencil" }), {
      useInitialResponse,
    });
    assert.equal(step.kind, "success");
  }
  const escaped = await runExchange(new ScramSha256Server(serverOptions(verifier)), new ScramSha256Client({ username: "a,b=c", password: "pencil" }));
  assert.deepEqual(escaped, { kind: "success", identity: { authcid: "a,b=c", authzid: "a,b=c" } });
  const asAdmin = await runExchange(
    new ScramSha256Server(serverOptions(verifier, { authzidAllowed: (_: string, authzid: string) => authzid === "postmaster" })),
    new ScramSha256Client({ username: "user", password: "pencil", authzid: "postmaster" }),
  );
  assert.deepEqual(asAdmin, { kind: "success", identity: { authcid: "user", authzid: "postmaster" } });
});

test("saslname escaping (RFC 5802 §5.1)", () => {
  assert.equal(encodeSaslName("a,b=c"), "a=2Cb=3Dc");
  assert.equal(decodeSaslName("a=2Cb=3Dc"), "a,b=c");
  assert.equal(decodeSaslName("=3D2C"), "=2C");
  for (const bad of ["a=b", "a=2c", "a,b", "", "a=", "tab\there"]) assert.equal(decodeSaslName(bad), null, bad);
});

test("tampered proof → bad-password, and no server-final is sent", async () => {
  const server = rfcServer();
  await server.start(bytes(CLIENT_FIRST));
  const step = await server.step(bytes(CLIENT_FINAL.replace("p=dHzb", "p=eHzb")));
  assert.deepEqual(step, { kind: "failure", reason: "bad-password" });
});

test("wrong password through the real client → bad-password", async () => {
  const step = await runExchange(new ScramSha256Server(serverOptions(rfcVerifier())), new ScramSha256Client({ username: "user", password: "pen" }));
  assert.equal(reason(step), "bad-password");
});

test("structural errors in client-final are malformed: wrong nonce, c= not the gs2 header, missing proof, bad base64", async () => {
  const finals = [
    CLIENT_FINAL.replace(`r=${CLIENT_NONCE}${SERVER_NONCE}`, `r=${CLIENT_NONCE}other`),
    CLIENT_FINAL.replace("c=biws", "c=eSws"), // "y,," while the header was "n,,"
    `c=biws,r=${CLIENT_NONCE}${SERVER_NONCE}`,
    CLIENT_FINAL.replace("p=dHzb", "p=!Hzb"),
    CLIENT_FINAL.replace(/=$/, ""),
    `${CLIENT_FINAL},x=after-proof`,
  ];
  for (const final of finals) {
    const server = rfcServer();
    await server.start(bytes(CLIENT_FIRST));
    assert.equal(reason(await server.step(bytes(final))), "malformed", final);
  }
});

test("client-first: p= channel binding, m= extensions, bad names and nonces are malformed before any lookup", async () => {
  const firsts = [
    `p=tls-unique,,n=user,r=${CLIENT_NONCE}`,
    `n,,m=ext,n=user,r=${CLIENT_NONCE}`,
    `x,,n=user,r=${CLIENT_NONCE}`,
    `n,,n=us=er,r=${CLIENT_NONCE}`,
    `n,,n=,r=${CLIENT_NONCE}`,
    "n,,n=user,r=",
    "n,,n=user,r=bad nonce",
    "n,,r=abc,n=user",
    `n,b=x,n=user,r=${CLIENT_NONCE}`,
    "n,,n=user",
    "",
  ];
  for (const first of firsts) {
    const verifier = rfcVerifier();
    assert.equal(reason(await rfcServer(verifier).start(bytes(first))), "malformed", first);
    assert.deepEqual(verifier.calls, [], first);
  }
});

test("gs2 flag y (client supports binding, thinks we do not) is accepted; its c= must echo y,,", async () => {
  const server = rfcServer();
  const first = await server.start(bytes(`y,,n=user,r=${CLIENT_NONCE}`));
  assert.equal(first.kind, "challenge");
  const step = await server.step(bytes(CLIENT_FINAL));
  assert.equal(reason(step), "malformed", "c=biws is n,, not y,,");
});

test("unknown user: stable fake salt derived from fakeSaltKey, 4096 iterations, failure only at the proof", async () => {
  const serverFirstFor = async () => {
    const step = await new ScramSha256Server(serverOptions(rfcVerifier()), { serverNonce: "S" }).start(bytes(`n,,n=ghost,r=${CLIENT_NONCE}`));
    assert.equal(step.kind, "challenge");
    return step.kind === "challenge" ? step.data.toString() : "";
  };
  const expectedSalt = createHmac("sha256", serverOptions(rfcVerifier()).fakeSaltKey).update("ghost").digest().subarray(0, 16);
  const first = await serverFirstFor();
  assert.equal(first, `r=${CLIENT_NONCE}S,s=${expectedSalt.toString("base64")},i=4096`);
  assert.equal(await serverFirstFor(), first, "same salt every time: no oracle");

  const step = await runExchange(new ScramSha256Server(serverOptions(rfcVerifier())), new ScramSha256Client({ username: "ghost", password: "pencil" }));
  assert.equal(reason(step), "unknown-user");
});

test("authzid refused → authzid-not-permitted after a valid proof, with no server-final", async () => {
  const step = await runExchange(
    new ScramSha256Server(serverOptions(rfcVerifier())),
    new ScramSha256Client({ username: "user", password: "pencil", authzid: "root" }),
  );
  assert.deepEqual(step, { kind: "failure", reason: "authzid-not-permitted" });
});

test("after server-final only an empty response succeeds; then the object is spent", async () => {
  const server = rfcServer();
  await server.start(bytes(CLIENT_FIRST));
  await server.step(bytes(CLIENT_FINAL));
  assert.equal(reason(await server.step(bytes("junk"))), "malformed");
  assert.equal(reason(await server.step(Buffer.alloc(0))), "malformed", "no second chance");

  const done = rfcServer();
  await done.start(bytes(CLIENT_FIRST));
  await done.step(bytes(CLIENT_FINAL));
  assert.equal((await done.step(Buffer.alloc(0))).kind, "success");
  assert.equal(reason(await done.step(Buffer.alloc(0))), "malformed");
  assert.equal(reason(await done.start(bytes(CLIENT_FIRST))), "malformed");
});

test("store problems: mechanism-unavailable when the store has no SCRAM at all, backend-error when it throws", async () => {
  const noScram = rfcVerifier();
  noScram.kinds = ["password"];
  noScram.scramSha256 = async () => null;
  assert.equal(reason(await rfcServer(noScram).start(bytes(CLIENT_FIRST))), "mechanism-unavailable");
  const failing = rfcVerifier();
  failing.broken = true;
  assert.equal(reason(await rfcServer(failing).start(bytes(CLIENT_FIRST))), "backend-error");
});

test("a step() arriving while the store lookup is pending ends the exchange for both calls", async () => {
  const server = rfcServer();
  const pending = server.start(bytes(CLIENT_FIRST));
  assert.equal(reason(await server.step(bytes(CLIENT_FINAL))), "malformed");
  assert.equal(reason(await pending), "malformed");
  assert.equal(reason(await server.step(bytes(CLIENT_FINAL))), "malformed");
});
