/**
 * The bearer-token verifier (src/auth/oauth-tokens.ts) against a local HTTPS issuer: the issuer's
 * certificate must verify (caFile), an unreachable or broken issuer is a temporary failure, and
 * the claim maps to the login.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { OAuthTokenVerifier } from "../../src/auth/oauth-tokens.js";
import { makeSelfSigned } from "../helpers/self-signed.js";

let dir: string;
let cert: string;
let server: Server;
let url: string;
let discoveryStatus = 200;
let keys: Awaited<ReturnType<typeof generateKeyPair>>;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "postern-oauth-unit-"));
  cert = join(dir, "ca.crt");
  const key = join(dir, "ca.key");
  await makeSelfSigned({ cn: "127.0.0.1", cert, key, san: "IP:127.0.0.1" });
  keys = await generateKeyPair("RS256", { extractable: true });
  const jwk = { ...(await exportJWK(keys.publicKey)), kid: "r1", alg: "RS256" };
  server = createServer({ cert: await readFile(cert), key: await readFile(key) }, (req, res) => {
    if (req.url === "/.well-known/openid-configuration") res.writeHead(discoveryStatus).end(JSON.stringify({ jwks_uri: `${url}/keys` }));
    else res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise((ok) => server.close(ok));
  await rm(dir, { recursive: true, force: true });
});

const sign = (claims: Record<string, unknown>) =>
  new SignJWT({ email: "Ann@Example.org", ...claims })
    .setProtectedHeader({ alg: "RS256", kid: "r1" })
    .setIssuer(url)
    .setAudience("smtp")
    .setExpirationTime("5m")
    .sign(keys.privateKey);

test("an issuer whose certificate does not verify is a temporary failure, never a pass", async () => {
  const verifier = new OAuthTokenVerifier({ issuer: url, audience: "smtp", claim: "email" });
  const result = await verifier.verify(await sign({}));
  assert.equal(result.ok, false);
  assert.equal(!result.ok && result.reason, "backend-error");
});

test("a failing discovery is a temporary failure, and is tried again on the next token", async () => {
  const verifier = new OAuthTokenVerifier({ issuer: url, audience: "smtp", claim: "email", caFile: cert });
  discoveryStatus = 500;
  const failed = await verifier.verify(await sign({}));
  assert.equal(!failed.ok && failed.reason, "backend-error");
  discoveryStatus = 200;
  assert.deepEqual(await verifier.verify(await sign({})), { ok: true, user: "ann@example.org" });
});

test("the claim maps to the lower-cased login; a missing claim, a missing scope, another named user fail", async () => {
  const verifier = new OAuthTokenVerifier({ issuer: url, audience: "smtp", claim: "upn", scope: "smtp.send", caFile: cert });
  assert.deepEqual(await verifier.verify(await sign({ upn: " Bob@Example.org", scp: ["smtp.send"] })), { ok: true, user: "bob@example.org" });
  assert.deepEqual(await verifier.verify(await sign({ upn: "bob@example.org", scp: ["smtp.send"] }), "BOB@example.org"), { ok: true, user: "bob@example.org" });
  assert.deepEqual(await verifier.verify(await sign({ scope: "smtp.send" })), { ok: false, reason: "bad-token", detail: "claim upn missing" });
  assert.deepEqual(await verifier.verify(await sign({ upn: "bob@example.org", scope: "smtp.sendx" })), {
    ok: false,
    reason: "bad-token",
    detail: "required scope missing",
  });
  const other = await verifier.verify(await sign({ upn: "bob@example.org", scope: "smtp.send" }), "eve@example.org");
  assert.deepEqual(other, { ok: false, reason: "bad-token", detail: "token is for another user than the one named", user: "bob@example.org" });
  const garbage = await verifier.verify("not.a.jwt");
  assert.equal(!garbage.ok && garbage.reason, "bad-token");
});
