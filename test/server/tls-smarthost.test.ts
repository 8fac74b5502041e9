/**
 * Issue 11 item 7: the relay password never goes to an unverified peer. A `relay.smarthost` with
 * AUTH checks the relay's certificate by default — the chain (system CAs, or its own `caFile` for
 * a private CA) and the name (`servername`, default the configured host) — and AUTH is never sent
 * in clear. The real server relays a message received on port 25 (from mynetworks) to a real
 * sink standing in for the relay or for a man in the middle; certificates come from openssl.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { configSchema } from "../../src/config/schema.js";
import { tlsWarnings } from "../../src/config/warnings.js";
import { RawSmtp } from "../e2e/helpers/raw-smtp.js";
import { startSink, type Sink } from "../delivery/helpers/sink.js";
import { testCert } from "../delivery/helpers/tls-cert.js";
import { baseTestConfig } from "../helpers/test-config.js";
import { startTestServer, type LogLine } from "./helpers.js";

const run = promisify(execFile);
const RELAY_LOGIN = { username: "relay-user", password: "relay-secret" };
let dir: string;
/** A private CA and certificates it signed, by subjectAltName. */
let ca: { file: string; leaf(san: string): Promise<{ key: string; cert: string }> };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "postern-smarthost-tls-"));
  const caKey = join(dir, "ca.key");
  const caFile = join(dir, "ca.pem");
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"];
  await run("openssl", ["req", "-x509", ...ec, "-subj", "/CN=Postern test CA", "-keyout", caKey, "-out", caFile]);
  let n = 0;
  ca = {
    file: caFile,
    async leaf(san) {
      const key = join(dir, `leaf${n}.key`);
      const cert = join(dir, `leaf${n++}.pem`);
      await run("openssl", [
        "req",
        "-x509",
        ...ec,
        "-subj",
        "/CN=relay",
        "-addext",
        `subjectAltName=${san}`,
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-CA",
        caFile,
        "-CAkey",
        caKey,
        "-keyout",
        key,
        "-out",
        cert,
      ]);
      return { key: await readFile(key, "utf8"), cert: await readFile(cert, "utf8") };
    },
  };
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * Starts Postern with this relay.smarthost, hands it one message for a remote domain on port 25,
 * and returns how the first delivery attempt ended: "delivered", or the smarthost error.
 */
async function relayThrough(sink: Sink, smarthost: Record<string, unknown>): Promise<LogLine> {
  const server = await startTestServer({
    mynetworks: ["127.0.0.1/32"],
    relay: { smarthost: { host: "127.0.0.1", port: sink.port, auth: RELAY_LOGIN, ...smarthost } },
  });
  try {
    const c = await RawSmtp.open(server.ports.mta);
    await c.reply();
    await c.expect("EHLO client.test", 250);
    await c.expect("MAIL FROM:<app@example.org>", 250);
    await c.expect("RCPT TO:<someone@far.test>", 250);
    await c.expect("DATA", 354);
    await c.expect("Subject: relayed\r\n\r\nhello\r\n.", 250);
    c.close();
    return await server.waitForLog((l) => l.event === "smarthost-error" || l.event === "delivered");
  } finally {
    await server.stop();
  }
}

const sawAuth = (sink: Sink) => sink.commands.some((c) => /^AUTH/i.test(c));

test("a smarthost with AUTH is verified by default: a self-signed (man-in-the-middle) certificate defers, no password sent", async () => {
  const sink = await startSink({ tls: await testCert(), auth: RELAY_LOGIN, requireAuth: true });
  try {
    const outcome = await relayThrough(sink, {});
    assert.equal(outcome.event, "smarthost-error", "the message must not be relayed");
    assert.match(String(outcome.err), /self-signed certificate/);
    assert.equal(sawAuth(sink), false, "AUTH must not reach an unverified peer");
    assert.equal(sink.messages.length, 0);
  } finally {
    await sink.close();
  }
});

test("caFile: a relay with a private CA is verified against it; servername is the name checked", async () => {
  const sink = await startSink({ tls: await ca.leaf("DNS:relay.test"), auth: RELAY_LOGIN, requireAuth: true });
  try {
    const outcome = await relayThrough(sink, { caFile: ca.file, servername: "relay.test" });
    assert.equal(outcome.event, "delivered", JSON.stringify(outcome));
    assert.equal(sink.messages.length, 1);
    assert.equal(sink.messages[0]!.tls, true);
    assert.equal(sink.messages[0]!.authUser, RELAY_LOGIN.username);
  } finally {
    await sink.close();
  }
});

test("the name is checked: a certificate from the trusted CA for another name defers, no password sent", async () => {
  // Without servername the configured host is the name: 127.0.0.1 is not in the certificate.
  const sink = await startSink({ tls: await ca.leaf("DNS:relay.test"), auth: RELAY_LOGIN, requireAuth: true });
  try {
    const byHost = await relayThrough(sink, { caFile: ca.file });
    assert.equal(byHost.event, "smarthost-error", JSON.stringify(byHost));
    assert.match(String(byHost.err), /IP: 127\.0\.0\.1 is not in the cert's list/);
    const byName = await relayThrough(sink, { caFile: ca.file, servername: "other.test" });
    assert.equal(byName.event, "smarthost-error", JSON.stringify(byName));
    assert.match(String(byName.err), /Host: other\.test\. is not in the cert's altnames/);
    assert.equal(sawAuth(sink), false);
  } finally {
    await sink.close();
  }
});

test("AUTH is never sent in clear: a relay that does not offer STARTTLS defers the mail", async () => {
  const sink = await startSink({ auth: RELAY_LOGIN, requireAuth: true });
  try {
    const outcome = await relayThrough(sink, { verify: false });
    assert.equal(outcome.event, "smarthost-error", JSON.stringify(outcome));
    assert.match(String(outcome.err), /refusing AUTH over an unencrypted connection/);
    assert.equal(sawAuth(sink), false);
  } finally {
    await sink.close();
  }
});

test("verify: false is the admin's explicit choice: the self-signed relay gets the mail, and config check warns", async () => {
  const sink = await startSink({ tls: await testCert(), auth: RELAY_LOGIN, requireAuth: true });
  try {
    const outcome = await relayThrough(sink, { verify: false });
    assert.equal(outcome.event, "delivered", JSON.stringify(outcome));
    assert.equal(sink.messages[0]!.authUser, RELAY_LOGIN.username);
  } finally {
    await sink.close();
  }
});

test("tlsWarnings: AUTH to an unverified relay, AUTH with tls none, verify=no routes to it, weak submission profile", () => {
  const parse = (extra: Record<string, unknown>) => configSchema.parse({ ...baseTestConfig("/tmp/unused"), ...extra });
  const smarthost = { host: "relay.example", port: 587, auth: RELAY_LOGIN };
  assert.deepEqual(tlsWarnings(parse({ relay: { smarthost } })), [], "the default (verified) draws no warning");
  assert.deepEqual(tlsWarnings(parse({ relay: { smarthost: "relay.example:25" } })), [], "no AUTH, nothing to steal");
  const [w] = tlsWarnings(parse({ relay: { smarthost: { ...smarthost, verify: false } } }));
  assert.match(w!, /^relay\.smarthost\.verify is false .*man in the middle gets the relay password/);
  // The old key name means the same.
  assert.equal(tlsWarnings(parse({ relay: { smarthost: { ...smarthost, rejectUnauthorized: false } } })).length, 1);
  assert.match(tlsWarnings(parse({ relay: { smarthost: { ...smarthost, tls: "none" } } })).join("\n"), /tls is none .*never sent in clear/);
  const routes = tlsWarnings(
    parse({
      relay: { smarthost },
      transport: {
        "a.example": "smarthost verify=no",
        "b.example": "smarthost relay.example:587 tls=none",
        "c.example": "smarthost other.example:25 verify=no",
      },
    }),
  );
  assert.equal(routes.length, 2, routes.join("\n"));
  assert.match(routes[0]!, /^transport "a\.example": verify=no/);
  assert.match(routes[1]!, /^transport "b\.example": tls=none/);
  const listeners = [
    { address: "127.0.0.1", port: 25, mode: "mta" },
    { address: "127.0.0.1", port: 465, mode: "submissions", tlsProfile: "compatible" },
  ];
  const weak = tlsWarnings(parse({ listeners }));
  assert.equal(weak.length, 1, weak.join("\n"));
  assert.match(weak[0]!, /^listener 127\.0\.0\.1:465 \(submissions\): tlsProfile compatible offers CBC/);
});

test("config: verify defaults to on with AUTH, off without; the listener's TLS profile defaults by mode", () => {
  const parse = (extra: Record<string, unknown>) => configSchema.parse({ ...baseTestConfig("/tmp/unused"), ...extra });
  const withAuth = parse({ relay: { smarthost: { host: "relay.example", auth: RELAY_LOGIN } } }).relay.smarthost;
  assert.equal(typeof withAuth === "object" && withAuth.verify, true);
  const without = parse({ relay: { smarthost: { host: "relay.example" } } }).relay.smarthost;
  assert.equal(typeof without === "object" && without.verify, false);
  assert.throws(() => parse({ relay: { smarthost: { host: "r.example", verify: true, rejectUnauthorized: false } } }), /disagree/);
  assert.deepEqual(
    parse({}).listeners.map((l) => l.tlsProfile),
    ["compatible", "intermediate", "intermediate"],
  );
});
