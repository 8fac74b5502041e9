import { test } from "node:test";
import assert from "node:assert/strict";
import { DigestMd5Client, DigestMd5Server, digestMd5ResponseValue, parseDigestDirectives, quoteDigestValue } from "../../src/sasl/digest-md5.js";
import { deriveDigestMd5Ha1 } from "../../src/sasl/secrets.js";
import type { SaslServerStep } from "../../src/sasl/types.js";
import { bytes, HOSTNAME, MemoryVerifier, runExchange, serverOptions } from "./helpers.js";

// RFC 2831 §4 example (IMAP): user chris, password secret.
const REALM = "elwood.innosoft.com";
const NONCE = "OA6MG9tEQGm2hh";
const CNONCE = "OA6MHXh6VqTrRk";
const RFC_RESPONSE =
  'charset=utf-8,username="chris",realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",nc=00000001,' +
  'cnonce="OA6MHXh6VqTrRk",digest-uri="imap/elwood.innosoft.com",response=d388dad90d4bbd760a152321f2143af7,qop=auth';
const reason = (step: SaslServerStep) => (step.kind === "failure" ? step.reason : step.kind);
const rfcServer = (verifier = new MemoryVerifier({ chris: "secret" }), overrides = {}) =>
  new DigestMd5Server(serverOptions(verifier, { hostname: REALM, ...overrides }), { nonce: NONCE, service: "imap" });

test("RFC 2831 §4 math: response and rspauth", () => {
  const params = { ha1: deriveDigestMd5Ha1("chris", REALM, "secret"), nonce: NONCE, cnonce: CNONCE, nc: "00000001", digestUri: `imap/${REALM}` };
  assert.equal(digestMd5ResponseValue(params, "AUTHENTICATE"), "d388dad90d4bbd760a152321f2143af7");
  assert.equal(digestMd5ResponseValue(params, ""), "ea40f60335c427b5527b84dbabcdfffd");
});

test("RFC 2831 §4 exchange replayed against the server (service imap)", async () => {
  const server = rfcServer();
  const first = await server.start(null);
  assert.deepEqual(first, { kind: "challenge", data: bytes(`realm="${REALM}",nonce="${NONCE}",qop="auth",charset=utf-8,algorithm=md5-sess`) });
  assert.deepEqual(await server.step(bytes(RFC_RESPONSE)), { kind: "challenge", data: bytes("rspauth=ea40f60335c427b5527b84dbabcdfffd") });
  assert.deepEqual(await server.step(Buffer.alloc(0)), { kind: "success", identity: { authcid: "chris", authzid: "chris" } });
});

test("RFC 2831 §4 exchange from the client side", () => {
  const client = new DigestMd5Client({ username: "chris", password: "secret" }, { service: "imap", serverHostname: REALM, cnonce: CNONCE });
  assert.equal(client.initial(), null);
  const response = client.respond(bytes(`realm="${REALM}",nonce="${NONCE}",qop="auth",algorithm=md5-sess,charset=utf-8`));
  assert.deepEqual(parseDigestDirectives(response.toString()), parseDigestDirectives(RFC_RESPONSE));
  assert.deepEqual(client.respond(bytes("rspauth=ea40f60335c427b5527b84dbabcdfffd")), Buffer.alloc(0));
});

test("client throws on a wrong rspauth", () => {
  const client = new DigestMd5Client({ username: "chris", password: "secret" }, { service: "imap", cnonce: CNONCE });
  client.respond(bytes(`realm="${REALM}",nonce="${NONCE}",qop="auth",algorithm=md5-sess,charset=utf-8`));
  assert.throws(() => client.respond(bytes("rspauth=00000000000000000000000000000000")), /rspauth mismatch/);
});

test("round trip over smtp/<hostname>, with authzid allowed and refused", async () => {
  const verifier = new MemoryVerifier({ "tim@example.org": "tanstaaftanstaaf" });
  const ok = await runExchange(
    new DigestMd5Server(serverOptions(verifier)),
    new DigestMd5Client({ username: "tim@example.org", password: "tanstaaftanstaaf" }),
  );
  assert.deepEqual(ok, { kind: "success", identity: { authcid: "tim@example.org", authzid: "tim@example.org" } });
  assert.ok(verifier.calls.includes(`digestMd5:tim@example.org:${HOSTNAME}`));

  const creds = { username: "tim@example.org", password: "tanstaaftanstaaf", authzid: "boss@example.org" };
  assert.equal(reason(await runExchange(new DigestMd5Server(serverOptions(verifier)), new DigestMd5Client(creds))), "authzid-not-permitted");
  const allowed = await runExchange(new DigestMd5Server(serverOptions(verifier, { authzidAllowed: () => true })), new DigestMd5Client(creds));
  assert.deepEqual(allowed, { kind: "success", identity: { authcid: "tim@example.org", authzid: "boss@example.org" } });
});

test("bad password and unknown user", async () => {
  const verifier = new MemoryVerifier({ chris: "secret" });
  assert.equal(
    reason(await runExchange(rfcServer(verifier), new DigestMd5Client({ username: "chris", password: "wrong" }, { service: "imap" }))),
    "bad-password",
  );
  assert.equal(reason(await runExchange(rfcServer(verifier), new DigestMd5Client({ username: "ghost", password: "x" }, { service: "imap" }))), "unknown-user");
});

test("malformed responses: nonce, nc, digest-uri, realm, qop, repeats, cipher, syntax", async () => {
  const variants = [
    RFC_RESPONSE.replace(`nonce="${NONCE}"`, 'nonce="other"'),
    RFC_RESPONSE.replace("nc=00000001", "nc=00000002"),
    RFC_RESPONSE.replace("imap/elwood", "smtp/elwood"),
    RFC_RESPONSE.replace('realm="elwood.innosoft.com"', 'realm="evil.example"'),
    RFC_RESPONSE.replace("qop=auth", "qop=auth-int"),
    RFC_RESPONSE.replace("charset=utf-8", "charset=latin1"),
    `${RFC_RESPONSE},nc=00000001`,
    `${RFC_RESPONSE},cipher=rc4`,
    `${RFC_RESPONSE},`,
    RFC_RESPONSE.replace('username="chris"', 'username="chris'),
    RFC_RESPONSE.replace('username="chris"', 'username="ch\u0001ris"'),
    RFC_RESPONSE.replace("response=d388", "response=D388"),
    RFC_RESPONSE.replace(/cnonce="[^"]*",/, ""),
    "x".repeat(5000),
  ];
  for (const variant of variants) {
    const verifier = new MemoryVerifier({ chris: "secret" });
    const server = rfcServer(verifier);
    await server.start(null);
    assert.equal(reason(await server.step(bytes(variant))), "malformed", variant.slice(0, 80));
    assert.deepEqual(verifier.calls, [], "no lookup for a malformed response");
  }
  assert.equal(reason(await rfcServer().start(bytes("x"))), "malformed", "no initial response");
});

test("directive parser: quoted-strings with escapes, tokens, whitespace; strict otherwise", () => {
  assert.deepEqual(
    parseDigestDirectives(' a = "x\\"y\\\\z" , B=tok ,realm="r1",realm="r2"'),
    new Map([
      ["a", ['x"y\\z']],
      ["b", ["tok"]],
      ["realm", ["r1", "r2"]],
    ]),
  );
  for (const bad of ["", "a", "a=", 'a="x', "a=b,,c=d", "a=b c", "a=b\r\n", "=b"]) assert.equal(parseDigestDirectives(bad), null, bad);
  assert.equal(quoteDigestValue('a"b\\c'), '"a\\"b\\\\c"');
});

test("after rspauth only an empty response succeeds; then the object is spent", async () => {
  const server = rfcServer();
  await server.start(null);
  await server.step(bytes(RFC_RESPONSE));
  assert.equal(reason(await server.step(bytes("x"))), "malformed");
  assert.equal(reason(await server.step(Buffer.alloc(0))), "malformed");
});
