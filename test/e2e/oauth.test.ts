/**
 * OAUTHBEARER (RFC 7628) and XOAUTH2 against the real server, with a local OIDC issuer: discovery
 * and JWKS over HTTPS on loopback with a test CA, tokens signed with test keys. Failures answer
 * with the JSON error challenge, then 535 after the client's reply; the token never reaches the log.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from "jose";
import { makeSelfSigned } from "../helpers/self-signed.js";
import { execFile } from "node:child_process";
import { BIN, ROOT, startPostern, type Postern } from "./helpers/postern.js";
import { b64, RawSmtp } from "./helpers/raw-smtp.js";

const USER = { address: "john@example.org", password: "correct horse battery" };
const AUDIENCE = "postern-smtp";
const SCOPE = "mail.send";

type Key = Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];

/** The issuer: discovery and JWKS over HTTPS; `served` are the keys it publishes now. */
class LocalIssuer {
  readonly served: JWK[] = [];
  jwksFetches = 0;
  url = "";
  private server!: Server;

  async start(cert: Buffer, key: Buffer): Promise<void> {
    this.server = createServer({ cert, key }, (req, res) => {
      res.setHeader("content-type", "application/json");
      if (req.url === "/.well-known/openid-configuration") res.end(JSON.stringify({ issuer: this.url, jwks_uri: `${this.url}/jwks` }));
      else if (req.url === "/jwks") {
        this.jwksFetches++;
        res.end(JSON.stringify({ keys: this.served }));
      } else res.writeHead(404).end("{}");
    });
    await new Promise<void>((ok) => this.server.listen(0, "127.0.0.1", ok));
    this.url = `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async publish(kid: string, key: Key): Promise<void> {
    this.served.push({ ...(await exportJWK(key)), kid, alg: "ES256", use: "sig" });
  }

  close(): Promise<void> {
    return new Promise((ok) => this.server.close(() => ok()));
  }
}

describe("OAUTHBEARER and XOAUTH2 with a local OIDC issuer", () => {
  let dir: string;
  let issuer: LocalIssuer;
  let postern: Postern;
  let noOAuth: Postern;
  const keys: Record<string, { privateKey: Key; publicKey: Key }> = {};

  /** A token signed by key `kid`: valid for USER unless `claims`/`opts` change it. */
  const token = (claims: JWTPayload = {}, opts: { kid?: string; iss?: string; aud?: string; expSec?: number } = {}) => {
    const kid = opts.kid ?? "k1";
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ email: "John@Example.org", scope: `openid ${SCOPE}`, ...claims })
      .setProtectedHeader({ alg: "ES256", kid })
      .setIssuer(opts.iss ?? issuer.url)
      .setAudience(opts.aud ?? AUDIENCE)
      .setIssuedAt(now - 10)
      .setExpirationTime(now + (opts.expSec ?? 300))
      .sign(keys[kid]!.privateKey);
  };
  const oauthbearer = (user: string, t: string) => b64(`n,${user ? `a=${user}` : ""},\x01host=mail.example.org\x01auth=Bearer ${t}\x01\x01`);
  const xoauth2 = (user: string, t: string) => b64(`user=${user}\x01auth=Bearer ${t}\x01\x01`);

  async function tlsSession(server: Postern = postern): Promise<{ smtp: RawSmtp; ehlo: string }> {
    const smtp = await RawSmtp.open(server.ports.submissions, { tls: true });
    assert.equal((await smtp.reply()).code, 220);
    return { smtp, ehlo: (await smtp.expect("EHLO client.test", 250)).text };
  }

  /**
   * A JWT makes the message longer than an AUTH command line may be (512 octets, RFC 4954 §4): the
   * client sends it after the server's empty challenge, where lines up to 12288 octets are taken.
   */
  async function auth(smtp: RawSmtp, mechanism: string, message: string) {
    const empty = await smtp.cmd(`AUTH ${mechanism}`);
    assert.equal(empty.text, "334 ");
    return smtp.cmd(message);
  }

  /** AUTH that the server refuses: JSON challenge, the client's answer, 535. */
  async function refused(mechanism: string, message: string, answer: string): Promise<Record<string, unknown>> {
    const { smtp } = await tlsSession();
    try {
      const challenge = await auth(smtp, mechanism, message);
      assert.equal(challenge.code, 334, challenge.text);
      const error = JSON.parse(Buffer.from(challenge.text.slice(4), "base64").toString()) as Record<string, unknown>;
      const final = await smtp.cmd(answer);
      assert.equal(final.code, 535, final.text);
      assert.match(final.text, /5\.7\.8/);
      return error;
    } finally {
      smtp.close();
    }
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-oauth-"));
    const cert = join(dir, "issuer.crt");
    const key = join(dir, "issuer.key");
    await makeSelfSigned({ cn: "127.0.0.1", cert, key, san: "IP:127.0.0.1" });
    issuer = new LocalIssuer();
    await issuer.start(await readFile(cert), await readFile(key));
    for (const kid of ["k1", "k2", "stranger"]) keys[kid] = await generateKeyPair("ES256", { extractable: true });
    await issuer.publish("k1", keys.k1!.publicKey);
    const oauth = { issuer: issuer.url, audience: AUDIENCE, scope: SCOPE, caFile: cert, keysRefreshCooldownSec: 0 };
    postern = await startPostern({ users: [USER], config: { auth: { oauth, throttle: { ipFailures: 100, accountFailures: 100, penaltyBaseMs: 0 } } } });
    noOAuth = await startPostern({ users: [USER] });
  });

  after(async () => {
    await postern?.stop();
    await noOAuth?.stop();
    await postern?.cleanup();
    await noOAuth?.cleanup();
    await issuer?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("offers OAUTHBEARER and XOAUTH2 over TLS only, and only with an issuer configured", async () => {
    const { smtp, ehlo } = await tlsSession();
    smtp.close();
    assert.match(ehlo, /AUTH .*OAUTHBEARER XOAUTH2/);
    const plain = await RawSmtp.open(postern.ports.submission);
    await plain.reply();
    const before = (await plain.expect("EHLO client.test", 250)).text;
    assert.doesNotMatch(before, /OAUTHBEARER|XOAUTH2/);
    assert.equal((await plain.cmd(`AUTH OAUTHBEARER ${oauthbearer("", await token())}`)).code, 530, "AUTH before STARTTLS");
    await plain.expect("STARTTLS", 220);
    await plain.upgradeTls();
    assert.match((await plain.expect("EHLO client.test", 250)).text, /OAUTHBEARER XOAUTH2/);
    plain.close();
    const other = await tlsSession(noOAuth);
    other.smtp.close();
    assert.match(other.ehlo, /AUTH /);
    assert.doesNotMatch(other.ehlo, /OAUTHBEARER|XOAUTH2/);
  });

  it("a valid token logs in as the claim's address (lower-cased) and sends; the log never holds the token", async () => {
    const t = await token();
    const { smtp } = await tlsSession();
    const login = await auth(smtp, "OAUTHBEARER", oauthbearer("john@example.org", t));
    assert.equal(login.code, 235, login.text);
    await smtp.expect("MAIL FROM:<john@example.org>", 250);
    await smtp.expect("RCPT TO:<john@example.org>", 250);
    await smtp.expect("DATA", 354);
    const done = await smtp.cmd("From: john@example.org\r\nTo: john@example.org\r\nSubject: token\r\n\r\nhi\r\n.");
    assert.equal(done.code, 250, done.text);
    smtp.close();
    const success = await postern.waitForLog((l) => l.event === "auth-success" && l.mechanism === "OAUTHBEARER");
    assert.equal(success.user, "john@example.org");
    assert.ok(!postern.logs.some((l) => JSON.stringify(l).includes(t.split(".")[2]!)), "no token in the log");
  });

  it("OAUTHBEARER without a= takes the login from the token", async () => {
    const { smtp } = await tlsSession();
    assert.equal((await auth(smtp, "OAUTHBEARER", oauthbearer("", await token()))).code, 235);
    smtp.close();
  });

  it("expired, wrong audience, wrong issuer, missing scope: the §3.2.2 error, AQ==, 535", async () => {
    const cases: [string, Promise<string>][] = [
      ["token expired", token({}, { expSec: -60 })],
      ["claim check failed: aud", token({}, { aud: "someone-else" })],
      ["claim check failed: iss", token({}, { iss: "https://evil.example" })],
      ["required scope missing", token({ scope: "openid profile" })],
    ];
    for (const [detail, pending] of cases) {
      const error = await refused("OAUTHBEARER", oauthbearer("john@example.org", await pending), "AQ==");
      assert.deepEqual(error, { status: "invalid_token", schemes: "bearer", scope: SCOPE }, detail);
      const line = await postern.waitForLog((l) => l.event === "auth-failure" && l.detail === detail);
      assert.equal(line.reason, "bad-token");
    }
  });

  it("the scope may come as an scp array", async () => {
    const { smtp } = await tlsSession();
    assert.equal((await auth(smtp, "OAUTHBEARER", oauthbearer("", await token({ scope: undefined, scp: [SCOPE] })))).code, 235);
    smtp.close();
  });

  it("an unknown kid fetches the keys again: a rotated key works, a key the issuer never published fails", async () => {
    const fetches = issuer.jwksFetches;
    await issuer.publish("k2", keys.k2!.publicKey);
    const { smtp } = await tlsSession();
    assert.equal((await auth(smtp, "OAUTHBEARER", oauthbearer("", await token({}, { kid: "k2" })))).code, 235);
    smtp.close();
    assert.equal(issuer.jwksFetches, fetches + 1, "refreshed once for the new kid");
    await refused("OAUTHBEARER", oauthbearer("", await token({}, { kid: "stranger" })), "AQ==");
    assert.equal(issuer.jwksFetches, fetches + 2, "refreshed for the unknown kid, still unknown");
    await postern.waitForLog((l) => l.event === "auth-failure" && l.detail === "no issuer key matches the token");
  });

  it("an alg none token and an HS256 token made with the public key are refused", async () => {
    const claims = { email: "john@example.org", scope: SCOPE, iss: issuer.url, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 300 };
    const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const none = `${part({ alg: "none", kid: "k1" })}.${part(claims)}.`;
    await refused("OAUTHBEARER", oauthbearer("", none), "AQ==");
    const publicJwk = await exportJWK(keys.k1!.publicKey);
    const hs = await new SignJWT(claims).setProtectedHeader({ alg: "HS256", kid: "k1" }).sign(Buffer.from(JSON.stringify(publicJwk)));
    await refused("OAUTHBEARER", oauthbearer("", hs), "AQ==");
    // Both refusals are logged as such: the predicate counts matching lines, past and future.
    let seen = 0;
    await postern.waitForLog((l) => l.event === "auth-failure" && l.reason === "bad-token" && l.detail === "algorithm not allowed" && ++seen === 2);
  });

  it("a token for another user than a= fails; so does a token for a login with no account", async () => {
    await refused("OAUTHBEARER", oauthbearer("mallory@example.org", await token()), "AQ==");
    await postern.waitForLog((l) => l.event === "auth-failure" && l.detail === "token is for another user than the one named");
    await refused("OAUTHBEARER", oauthbearer("", await token({ email: "ghost@example.org" })), "AQ==");
    await postern.waitForLog((l) => l.event === "auth-failure" && l.reason === "unknown-user" && l.mechanism === "OAUTHBEARER");
  });

  it("XOAUTH2: a valid token logs in; an invalid one gets the JSON error, the empty answer, then 535", async () => {
    const { smtp } = await tlsSession();
    assert.equal((await auth(smtp, "XOAUTH2", xoauth2("john@example.org", await token()))).code, 235);
    smtp.close();
    const error = await refused("XOAUTH2", xoauth2("john@example.org", await token({}, { expSec: -60 })), "");
    assert.deepEqual(error, { status: "401", schemes: "bearer", scope: SCOPE });
    await refused("XOAUTH2", xoauth2("mallory@example.org", await token()), "");
  });

  it("postern send --auth OAUTHBEARER / XOAUTH2 with the token as the password: sent after the empty challenge (RFC 4954 §4)", async () => {
    // A real issuer's token is long (claims, RS256 signatures): too long for the AUTH line itself.
    const t = await token({ name: "J".repeat(400) });
    for (const mechanism of ["OAUTHBEARER", "XOAUTH2"]) {
      const args = ["send", "--server", `127.0.0.1:${postern.ports.submissions}`, "--tls", "implicit", "--insecure", "--ehlo", "client.test"];
      args.push("--from", USER.address, "--to", USER.address, "--user", USER.address, "--auth", mechanism, "--subject", mechanism);
      const r = await new Promise<{ code: number; out: string }>((resolve) => {
        const child = execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, POSTERN_PASSWORD: t } }, (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
        );
        child.stdin?.end();
      });
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, new RegExp(`-> AUTH ${mechanism}\\n<- 334 \\n-> <credentials>\\n`), "the long message waits for the empty challenge");
      assert.match(r.out, /<- 235 2\.7\.0/);
      assert.ok(!r.out.includes(t), "the token is not echoed");
    }
  });

  it("a whole token on the AUTH line itself (as Python's smtplib and many XOAUTH2 libraries send it) is read and checked", async () => {
    const t = await token({ name: "J".repeat(1500) });
    for (const [mechanism, message] of [
      ["XOAUTH2", xoauth2("john@example.org", t)],
      ["OAUTHBEARER", oauthbearer("john@example.org", t)],
    ] as const) {
      assert.ok(message.length > 2000, "far over the 512-octet command line");
      const { smtp } = await tlsSession();
      const r = await smtp.cmd(`AUTH ${mechanism} ${message}`);
      assert.equal(r.code, 235, `${mechanism}: ${r.text}`);
      smtp.close();
    }
  });

  it("a malformed OAUTHBEARER message is a 501, with no challenge", async () => {
    const { smtp } = await tlsSession();
    const r = await auth(smtp, "OAUTHBEARER", b64("n,,\x01host=x\x01\x01"));
    assert.equal(r.code, 501, r.text);
    smtp.close();
  });
});
