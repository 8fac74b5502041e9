/**
 * Issue 11 item 13: the TLS profile of each listener, checked with real `openssl s_client`.
 * Submission ports (587 STARTTLS, 465 implicit, also behind a PROXY header) default to
 * "intermediate": TLS 1.3, and TLS 1.2 with ECDHE+AEAD only — no CBC suite (LUCKY13 class). Port
 * 25 keeps Node's wider list for old senders. TLS 1.0/1.1 are refused everywhere (RFC 8996). The
 * profile is a per-listener setting. The test certificate is ECDSA, hence the ECDSA suites.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startTestServer, type TestServer } from "./helpers.js";
import { handshake, proxyRelay, type Target } from "./tls-openssl.js";

const CBC = "ECDHE-ECDSA-AES128-SHA";
const AEAD = "ECDHE-ECDSA-AES128-GCM-SHA256";

let server: TestServer;
let relay: Awaited<ReturnType<typeof proxyRelay>>;
const at = (i: number) => server.server.listeners[i]!.port;

before(async () => {
  server = await startTestServer({
    trustedProxies: ["127.0.0.1/32"],
    listeners: [
      { address: "127.0.0.1", port: 0, mode: "mta" },
      { address: "127.0.0.1", port: 0, mode: "submission" },
      { address: "127.0.0.1", port: 0, mode: "submissions" },
      { address: "127.0.0.1", port: 0, mode: "submissions", proxyProtocol: true },
      { address: "127.0.0.1", port: 0, mode: "mta", tlsProfile: "intermediate" },
      { address: "127.0.0.1", port: 0, mode: "submission", tlsProfile: "modern" },
      { address: "127.0.0.1", port: 0, mode: "submissions", tlsProfile: "compatible" },
    ],
  });
  relay = await proxyRelay(at(3));
});
after(async () => {
  await relay?.close();
  await server?.stop();
});

const mta = (): Target => ({ port: at(0), starttls: true });
const submission = (): Target => ({ port: at(1), starttls: true });
const submissions = (): Target => ({ port: at(2) });
const proxied = (): Target => ({ port: relay.port });
const everyDefault: [string, () => Target][] = [
  ["25", mta],
  ["587", submission],
  ["465", submissions],
  ["465 behind PROXY", proxied],
];

test("a CBC suite is refused on 587 and 465 (also behind a PROXY header), accepted on 25", async () => {
  for (const [name, t] of [
    ["587", submission],
    ["465", submissions],
    ["465 behind PROXY", proxied],
  ] as const) {
    const r = await handshake(t(), ["-tls1_2", "-cipher", CBC]);
    assert.equal(r.ok, false, `${name} accepted ${CBC}:\n${r.output}`);
    assert.match(r.output, /handshake failure/, `${name}: refused by the server, not by our own client`);
  }
  const r = await handshake(mta(), ["-tls1_2", "-cipher", CBC]);
  assert.equal(r.ok, true, r.output);
  assert.equal(r.protocol, "TLSv1.2");
  assert.equal(r.cipher, CBC);
});

test("TLS 1.2 with ECDHE+AEAD and TLS 1.3 work on every listener", async () => {
  for (const [name, t] of everyDefault) {
    const r12 = await handshake(t(), ["-tls1_2", "-cipher", AEAD]);
    assert.equal(r12.ok, true, `${name}: ${r12.output}`);
    assert.deepEqual([r12.protocol, r12.cipher], ["TLSv1.2", AEAD], name);
    const r13 = await handshake(t(), ["-tls1_3"]);
    assert.equal(r13.ok, true, `${name}: ${r13.output}`);
    assert.equal(r13.protocol, "TLSv1.3", name);
  }
});

test("TLS 1.0 and 1.1 are refused on every listener (RFC 8996)", async () => {
  for (const [name, t] of everyDefault) {
    for (const version of ["-tls1", "-tls1_1"]) {
      // SECLEVEL=0 lets this OpenSSL offer the old versions at all; the refusal must be the server's.
      const r = await handshake(t(), [version, "-cipher", "DEFAULT@SECLEVEL=0"]);
      assert.equal(r.ok, false, `${name} ${version}: ${r.output}`);
      assert.match(r.output, /alert protocol version/, `${name} ${version}: refused by the server`);
    }
  }
});

test("the profile is per listener: intermediate on an mta listener, modern (TLS 1.3 only), compatible on submission", async () => {
  const strictMta = await handshake({ port: at(4), starttls: true }, ["-tls1_2", "-cipher", CBC]);
  assert.equal(strictMta.ok, false, strictMta.output);
  const modern12 = await handshake({ port: at(5), starttls: true }, ["-tls1_2", "-cipher", AEAD]);
  assert.equal(modern12.ok, false, modern12.output);
  const modern13 = await handshake({ port: at(5), starttls: true }, ["-tls1_3"]);
  assert.equal(modern13.protocol, "TLSv1.3", modern13.output);
  const loose = await handshake({ port: at(6) }, ["-tls1_2", "-cipher", CBC]);
  assert.equal(loose.cipher, CBC, loose.output);
});

test("port 25's wider list still prefers AEAD: a client offering both gets ECDHE+AEAD", async () => {
  const r = await handshake(mta(), ["-tls1_2", "-cipher", `${CBC}:${AEAD}`]);
  assert.equal(r.cipher, AEAD, r.output);
});
