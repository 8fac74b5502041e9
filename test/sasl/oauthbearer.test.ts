/** OAUTHBEARER (RFC 7628) and XOAUTH2: message parsing, the error challenge and its answer, the clients. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { OAuthBearerClient, OAUTHBEARER, encodeOAuthBearerMessage, parseOAuthBearerMessage } from "../../src/sasl/oauthbearer.js";
import { XOAUTH2, XOAuth2Client, parseXOAuth2Message } from "../../src/sasl/xoauth2.js";
import type { CredentialVerifier, TokenResult } from "../../src/sasl/types.js";
import { bytes, MemoryVerifier, runExchange, serverOptions } from "./helpers.js";

/** A verifier whose tokens are "good-<user>": anything else fails as a bad token. */
function tokenVerifier(calls: string[] = []): CredentialVerifier {
  const base = new MemoryVerifier({});
  return Object.assign(Object.create(base) as CredentialVerifier, {
    credentials: () => ["bearer-token"] as const,
    async verifyToken(token: string, claimedUser?: string): Promise<TokenResult> {
      calls.push(`verifyToken:${claimedUser ?? ""}`);
      const user = token.startsWith("good-") ? token.slice(5) : undefined;
      if (!user) return { ok: false, reason: "bad-token", detail: "signature invalid", scope: "mail" };
      if (claimedUser && claimedUser !== user) return { ok: false, reason: "bad-token", detail: "other user", user, scope: "mail" };
      return { ok: true, user };
    },
  });
}

const RFC_EXAMPLE = "n,a=user@example.com,\x01host=server.example.com\x01port=587\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01";

test("RFC 7628 §4.1 example message parses: a= and the token, host/port ignored", () => {
  assert.deepEqual(parseOAuthBearerMessage(bytes(RFC_EXAMPLE)), { user: "user@example.com", token: "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==" });
  assert.deepEqual(parseOAuthBearerMessage(bytes("n,,\x01auth=bearer abc\x01\x01")), { user: "", token: "abc" });
  assert.deepEqual(parseOAuthBearerMessage(bytes("y,a=a=3Db=2Cc@x,\x01auth=Bearer t\x01\x01")), { user: "a=b,c@x", token: "t" });
});

test("malformed OAUTHBEARER messages are refused", () => {
  const bad = [
    "", // nothing
    "n,a=u@x,\x01auth=Bearer t\x01", // no final %x01
    "n,a=u@x\x01auth=Bearer t\x01\x01", // header without its trailing comma
    "p=tls-unique,,\x01auth=Bearer t\x01\x01", // channel binding is not offered
    "x,,\x01auth=Bearer t\x01\x01", // unknown cbind flag
    "n,a=u=40x,\x01auth=Bearer t\x01\x01", // bad saslname escape
    "n,,\x01host=h\x01\x01", // no auth=
    "n,,\x01auth=Basic dTpw\x01\x01", // not a bearer token
    "n,,\x01auth=Bearer \x01\x01", // empty token
    "n,,\x01auth=Bearer a b\x01\x01", // space inside the token
    "n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01", // auth twice
    "n,,\x01auth=Bearer t\x01k3y=v\x01\x01", // key not ALPHA
    "n,,\x01auth=Bearer t\x01novalue\x01\x01", // a kvpair without =
    "n,,\x01auth=Bearer t\x01x=\x00\x01\x01", // control character in a value
  ];
  for (const m of bad) assert.equal(parseOAuthBearerMessage(bytes(m)), null, JSON.stringify(m));
  assert.equal(parseOAuthBearerMessage(Buffer.from([0x6e, 0x2c, 0x2c, 0x01, 0xff, 0x01, 0x01])), null, "invalid UTF-8");
});

test("extra kvpairs are allowed and ignored", () => {
  assert.deepEqual(parseOAuthBearerMessage(bytes("n,,\x01foo=bar baz\x01auth=Bearer t\x01qux=\x01\x01")), { user: "", token: "t" });
});

test("OAUTHBEARER server: a good token succeeds as the token's login", async () => {
  const calls: string[] = [];
  const server = OAUTHBEARER.createServer(serverOptions(tokenVerifier(calls)));
  const step = await runExchange(server, new OAuthBearerClient({ username: "ann", password: "good-ann" }));
  assert.deepEqual(step, { kind: "success", identity: { authcid: "ann", authzid: "ann" } });
  assert.deepEqual(calls, ["verifyToken:ann"]);
});

test("OAUTHBEARER server: a bad token gets the §3.2.2 JSON error challenge, then fails after %x01", async () => {
  const server = OAUTHBEARER.createServer(serverOptions(tokenVerifier()));
  const first = await server.start(encodeOAuthBearerMessage("ann", "forged"));
  assert.equal(first.kind, "challenge");
  assert.deepEqual(JSON.parse((first as { data: Buffer }).data.toString()), { status: "invalid_token", schemes: "bearer", scope: "mail" });
  assert.deepEqual(await server.step(Buffer.from([1])), { kind: "failure", reason: "bad-token", detail: "signature invalid" });
  assert.equal((await server.step(Buffer.from([1]))).kind, "failure", "finished objects stay finished");
});

test("OAUTHBEARER server: a token for another user than a= fails; the client answers the error with %x01", async () => {
  const step = await runExchange(OAUTHBEARER.createServer(serverOptions(tokenVerifier())), new OAuthBearerClient({ username: "eve", password: "good-ann" }));
  assert.deepEqual(step, { kind: "failure", reason: "bad-token", detail: "other user" });
});

test("OAUTHBEARER server: without an initial response it asks with an empty challenge", async () => {
  const step = await runExchange(OAUTHBEARER.createServer(serverOptions(tokenVerifier())), new OAuthBearerClient({ username: "", password: "good-bob" }), {
    useInitialResponse: false,
  });
  assert.deepEqual(step, { kind: "success", identity: { authcid: "bob", authzid: "bob" } });
});

test("OAUTHBEARER server: a malformed message is malformed at once; a store without tokens cannot serve it", async () => {
  assert.equal(((await OAUTHBEARER.createServer(serverOptions(tokenVerifier())).start(bytes("n,,\x01\x01"))) as { reason: string }).reason, "malformed");
  const noTokens = new MemoryVerifier({});
  const step = await OAUTHBEARER.createServer(serverOptions(noTokens)).start(encodeOAuthBearerMessage("", "good-a"));
  assert.equal((step as { reason: string }).reason, "mechanism-unavailable");
});

test("OAUTHBEARER: the login in the first message is a=", () => {
  assert.equal(OAUTHBEARER.loginInFirstMessage!(bytes(RFC_EXAMPLE)), "user@example.com");
  assert.equal(OAUTHBEARER.loginInFirstMessage!(bytes("n,,\x01auth=Bearer t\x01\x01")), undefined);
});

test("XOAUTH2 parsing: Google's form only", () => {
  assert.deepEqual(parseXOAuth2Message(bytes("user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01")), {
    user: "someuser@example.com",
    token: "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
  });
  for (const m of [
    "user=u\x01auth=Bearer t\x01",
    "auth=Bearer t\x01user=u\x01\x01",
    "user=\x01auth=Bearer t\x01\x01",
    "user=u\x01auth=Basic t\x01\x01",
    "user=u\x01\x01",
  ]) {
    assert.equal(parseXOAuth2Message(bytes(m)), null, JSON.stringify(m));
  }
});

test("XOAUTH2 server: good token succeeds; a bad one gets the JSON challenge, the empty answer, then fails", async () => {
  const ok = await runExchange(XOAUTH2.createServer(serverOptions(tokenVerifier())), new XOAuth2Client({ username: "ann", password: "good-ann" }));
  assert.deepEqual(ok, { kind: "success", identity: { authcid: "ann", authzid: "ann" } });
  const server = XOAUTH2.createServer(serverOptions(tokenVerifier()));
  const first = await server.start(new XOAuth2Client({ username: "ann", password: "forged" }).initial());
  assert.equal(first.kind, "challenge");
  assert.deepEqual(JSON.parse((first as { data: Buffer }).data.toString()), { status: "401", schemes: "bearer", scope: "mail" });
  assert.deepEqual(await server.step(Buffer.alloc(0)), { kind: "failure", reason: "bad-token", detail: "signature invalid" });
});
