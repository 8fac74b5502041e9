/**
 * Outbound TLS policy through the real `postern serve` (issue 15): MX, TXT and TLSA from the test
 * DNS server (with and without the AD bit, dns.dnssec trust-ad), MTA-STS policies from a local
 * HTTPS server, real TLS sinks with certificates of a test CA. Each domain's MX name resolves to
 * 127.0.0.1 and reaches the one sink on outbound.mxPort; the name decides which policy applies.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PolicyCounts } from "../../src/delivery/tls-policy/tls-report.js";
import { startDnsServer, type ZoneEntry } from "../delivery/helpers/dns-server.js";
import { startSink, type Sink, type SinkOptions } from "../delivery/helpers/sink.js";
import { makeTestCa, type IssuedCert, type TestCa } from "../helpers/test-ca.js";
import { policyText, startPolicyServer, type PolicyServer } from "../tls-policy/helpers/policy-server.js";
import { startPostern, runCli, type Postern } from "./helpers/postern.js";
import { RawSmtp } from "./helpers/raw-smtp.js";
import { sendViaMta } from "./helpers/mta-send.js";

let dir: string;
let ca: TestCa;
let mxCert: IssuedCert;
let otherCa: TestCa;
let policyServer: PolicyServer;

/** The domains with an MTA-STS policy, and its mode. */
const STS: Record<string, "enforce" | "testing"> = { "good.test": "enforce", "wrong.test": "enforce", "testing.test": "testing", "stripped.test": "enforce" };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "postern-outbound-tls-"));
  ca = await makeTestCa(join(dir, "ca"));
  // The one certificate the sinks present: right for mx.good.test and mx.dane.test only.
  mxCert = await ca.issue({ names: ["mx.good.test", "mx.dane.test"] });
  otherCa = await makeTestCa(join(dir, "other"), "Not Trusted Root");
  policyServer = await startPolicyServer(await ca.issue({ names: Object.keys(STS).map((d) => `mta-sts.${d}`) }));
  for (const [domain, mode] of Object.entries(STS)) policyServer.routes.set(`mta-sts.${domain}`, { body: policyText(mode, [`mx.${domain}`]) });
});

after(async () => {
  await policyServer.close();
  await rm(dir, { recursive: true, force: true });
});

function tlsa3(cert: string): { usage: number; selector: number; matchingType: number; data: Buffer } {
  const spki = new X509Certificate(cert).publicKey.export({ type: "spki", format: "der" });
  return { usage: 3, selector: 1, matchingType: 1, data: createHash("sha256").update(spki).digest() };
}

/** TLSA of a domain's MX host: AD on the TLSA answer, and (default true) on the domain's MX answer. */
type TlsaSpec = { cert: string; ad: boolean; mxAd?: boolean };

/** far domains: MX mx.DOMAIN → 127.0.0.1; MTA-STS TXT and policy host for those in STS; TLSA per `tlsa`. */
function zone(domains: string[], port: number, tlsa: Record<string, TlsaSpec>): Record<string, ZoneEntry> {
  const z: Record<string, ZoneEntry> = {};
  for (const d of domains) {
    // RFC 7672 §2.2.1: the MX RRset must be authenticated too for its hosts' TLSA to count.
    z[d] = { MX: [{ preference: 10, exchange: `mx.${d}` }], ad: tlsa[d]?.mxAd ?? true };
    z[`mx.${d}`] = { A: ["127.0.0.1"], ad: true };
    if (STS[d]) {
      z[`_mta-sts.${d}`] = { TXT: ["v=STSv1; id=20261203"] };
      z[`mta-sts.${d}`] = { A: ["127.0.0.1"] };
    }
    const t = tlsa[d];
    // RFC 7672 §2.2.3: TLSA at _PORT._tcp.MX (the sink's port stands in for 25).
    if (t) z[`_${port}._tcp.mx.${d}`] = { TLSA: [tlsa3(t.cert)], ad: t.ad };
  }
  return z;
}

interface Rig {
  server: Postern;
  sink: Sink;
  stateDir: string;
  close(): Promise<void>;
}

async function rig(sinkOpts: SinkOptions, domains: string[], tlsa: Record<string, TlsaSpec>): Promise<Rig> {
  const sink = await startSink(sinkOpts);
  const dns = await startDnsServer(zone(domains, sink.port, tlsa));
  const stateDir = await mkdtemp(join(dir, "tls-rpt-"));
  const server = await startPostern({
    config: {
      mynetworks: ["127.0.0.1/32"],
      queue: { firstRetrySec: 3600 },
      dns: { servers: [dns.address], dnssec: "trust-ad" },
      outbound: {
        mxPort: sink.port,
        caFile: ca.certFile,
        mtaSts: { httpsPort: policyServer.port, caFile: ca.certFile, cacheDir: join(stateDir, "sts") },
        tlsRpt: { enabled: true, stateDir },
      },
    },
  });
  return {
    server,
    sink,
    stateDir,
    async close() {
      await server.cleanup();
      await sink.close();
      await dns.close();
    },
  };
}

const send = (server: Postern, to: string, mailParams?: string) =>
  sendViaMta(server.ports.mta, { from: "sender@example.org", to: [to], data: `Subject: to ${to}\r\n\r\nhello\r\n`, mailParams });

/** Over STARTTLS, as RFC 8689 §4.1 wants a REQUIRETLS message to arrive. */
async function sendRequireTls(server: Postern, to: string): Promise<string> {
  const c = await RawSmtp.open(server.ports.mta);
  try {
    const ehlo = await c.greetAndStartTls();
    assert.match(ehlo.text, /REQUIRETLS/);
    await c.expect("MAIL FROM:<sender@example.org> REQUIRETLS", 250);
    await c.expect(`RCPT TO:<${to}>`, 250);
    await c.expect("DATA", 354);
    const r = await c.cmd(`Subject: secret for ${to}\r\n\r\nhello\r\n.`);
    const id = /queued as (\S+)/.exec(r.text)?.[1];
    assert.ok(id, r.text);
    await c.cmd("QUIT").catch(() => undefined);
    return id;
  } finally {
    c.close();
  }
}

async function queueShow(server: Postern, id: string): Promise<string> {
  const r = await runCli(["queue", "show", id, "--config", server.configPath]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

test("outbound TLS: MTA-STS enforce/testing, DANE with and without AD, REQUIRETLS; queue show names the policy", async () => {
  const domains = ["good.test", "wrong.test", "testing.test", "dane.test", "noad.test", "danebad.test", "mxnoad.test", "plain.test"];
  const untrusted = await otherCa.issue({ names: ["mx.danebad.test"] });
  const r = await rig({ tls: { key: mxCert.keyPem, cert: mxCert.certPem }, requireTlsExtension: true }, domains, {
    "dane.test": { cert: mxCert.leafPem, ad: true },
    "noad.test": { cert: untrusted.leafPem, ad: false }, // would not match: ignored without AD
    "danebad.test": { cert: untrusted.leafPem, ad: true },
    "mxnoad.test": { cert: untrusted.leafPem, ad: true, mxAd: false }, // signed TLSA, unsigned MX: ignored
  });
  try {
    const { server, sink } = r;
    const delivered = (id: string) => server.waitForLog((l) => l.event === "delivered" && l.id === id);
    const deferred = (id: string) => server.waitForLog((l) => l.event === "deferred" && l.id === id);

    // enforce + a certificate valid for the MX name → delivered over TLS
    const good = await send(server, "a@good.test");
    assert.equal((await delivered(good)).tlsPolicy, "mta-sts-enforce");

    // enforce + a certificate for other names → deferred, with the reason
    const wrong = await send(server, "a@wrong.test");
    const wrongLog = await deferred(wrong);
    assert.equal(wrongLog.tlsPolicy, "mta-sts-enforce");
    assert.match(String(wrongLog.detail), /^451 4\.7\.5 MTA-STS enforce: certificate of mx\.wrong\.test does not match the name \(/);
    const shown = await queueShow(server, wrong);
    assert.match(shown, /<a@wrong\.test> pending, 1 attempt; TLS policy: MTA-STS enforce; next attempt /);
    assert.match(shown, /last: 451 4\.7\.5 MTA-STS enforce: certificate of mx\.wrong\.test does not match the name/);

    // testing → delivered, the failure logged and counted for TLS-RPT
    const testing = await send(server, "a@testing.test");
    assert.equal((await delivered(testing)).tlsPolicy, "mta-sts-testing");
    const failure = await server.waitForLog((l) => l.event === "tls-policy-failure" && l.id === testing);
    assert.equal(failure.resultType, "certificate-host-mismatch");

    // DANE-EE match → delivered; without AD the (mismatching) TLSA is ignored; with AD a mismatch defers
    const dane = await send(server, "a@dane.test");
    assert.equal((await delivered(dane)).tlsPolicy, "dane");
    const noad = await send(server, "a@noad.test");
    assert.equal((await delivered(noad)).tlsPolicy, "opportunistic");
    const danebad = await send(server, "a@danebad.test");
    const danebadLog = await deferred(danebad);
    assert.equal(danebadLog.tlsPolicy, "dane");
    assert.match(String(danebadLog.detail), /^451 4\.7\.5 DANE: .*mx\.danebad\.test/);
    assert.ok(String(danebadLog.detail).includes(`_${sink.port}._tcp.mx.danebad.test`), "names the TLSA name looked up");
    const mxnoad = await send(server, "a@mxnoad.test");
    assert.equal((await delivered(mxnoad)).tlsPolicy, "opportunistic");
    assert.match(await queueShow(server, danebad), /TLS policy: DANE/);

    // REQUIRETLS: verified (MTA-STS enforce) and offered → delivered with REQUIRETLS on MAIL FROM
    const secret = await sendRequireTls(server, "b@good.test");
    await delivered(secret);
    const carried = sink.messages.find((m) => m.to.includes("b@good.test"));
    assert.ok(carried?.mailParams.includes("REQUIRETLS"), "REQUIRETLS passed on");
    assert.equal(carried?.tls, true);
    // REQUIRETLS to a domain with neither DANE nor MTA-STS → bounced, 5.7.30
    const unverifiable = await sendRequireTls(server, "b@plain.test");
    const failed = await server.waitForLog((l) => l.event === "failed" && l.id === unverifiable);
    assert.match(String(failed.detail), /^550 5\.7\.30 REQUIRETLS support required/);
    assert.ok(!sink.messages.some((m) => m.to.includes("b@plain.test")));

    assert.deepEqual(sink.messages.map((m) => m.to[0]).sort(), ["a@dane.test", "a@good.test", "a@mxnoad.test", "a@noad.test", "a@testing.test", "b@good.test"]);

    // A graceful stop writes the day's TLS-RPT counts: testing.test has its failure, good.test its success.
    await server.stop();
    const [day] = await readdir(r.stateDir).then((names) => names.filter((n) => n.endsWith(".json")));
    assert.ok(day, "a day file was written");
    const counts = JSON.parse(await readFile(join(r.stateDir, day), "utf8")) as { domains: Record<string, PolicyCounts[]> };
    const testingCounts = counts.domains["testing.test"]!.find((p) => p.policy.type === "sts")!;
    assert.equal(testingCounts.failures, 1);
    assert.equal(counts.domains["good.test"]!.find((p) => p.policy.type === "sts")!.successes >= 1, true);
    assert.equal(counts.domains["dane.test"]!.find((p) => p.policy.type === "tlsa")!.successes, 1);
  } finally {
    await r.close();
  }
});

test("outbound TLS: STARTTLS stripped under MTA-STS enforce and under DANE → deferred with the reason", async () => {
  const r = await rig({}, ["stripped.test", "dane.test"], { "dane.test": { cert: mxCert.leafPem, ad: true } });
  try {
    const { server, sink } = r;
    const sts = await send(server, "a@stripped.test");
    const stsLog = await server.waitForLog((l) => l.event === "deferred" && l.id === sts);
    assert.equal(stsLog.detail, "451 4.7.5 STARTTLS not offered by mx.stripped.test under MTA-STS enforce");
    const dane = await send(server, "a@dane.test");
    const daneLog = await server.waitForLog((l) => l.event === "deferred" && l.id === dane);
    assert.equal(daneLog.detail, "451 4.7.5 STARTTLS not offered by mx.dane.test under DANE");
    assert.match(await queueShow(server, dane), /TLS policy: DANE; next attempt .*\n\s+last: 451 4\.7\.5 STARTTLS not offered by mx\.dane\.test under DANE/);
    assert.equal(sink.messages.length, 0);
    assert.ok(!sink.commands.some((l) => l.startsWith("MAIL")), "no transaction in clear");
  } finally {
    await r.close();
  }
});
