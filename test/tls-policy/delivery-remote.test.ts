/**
 * The delivery path under a TLS policy, with real parts: the deliverer, MX lookups through the
 * test DNS server, real TLS sinks presenting certificates of a test CA, dane.ts's matcher, and
 * fake MTA-STS/TLSA ports (their real resolvers are tested in their own files and end to end).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { MxResolver } from "../../src/delivery/mx.js";
import { createDeliverer } from "../../src/delivery/router.js";
import { SmtpClient, SmtpClientError } from "../../src/delivery/smtp-client.js";
import { matchDane } from "../../src/delivery/tls-policy/dane.js";
import { OutboundTlsPolicy } from "../../src/delivery/tls-policy/policy.js";
import type { MtaStsResult, TlsaRecord, TlsaResult, TlsSessionOutcome } from "../../src/delivery/tls-policy/types.js";
import type { Envelope, MessageSource, RecipientResult } from "../../src/queue/types.js";
import type { Log } from "../../src/base/log.js";
import { startDnsServer } from "../delivery/helpers/dns-server.js";
import { startSink, type Sink, type SinkOptions } from "../delivery/helpers/sink.js";
import { makeTestCa, type IssuedCert, type TestCa } from "../helpers/test-ca.js";

const quiet: Log = { info: () => undefined, warn: () => undefined, error: () => undefined };
const DAY = 86_400_000;

let dir: string;
let ca: TestCa;
let good: IssuedCert;
let wrongName: IssuedCert;
let expired: IssuedCert;
let otherCa: TestCa;
let untrusted: IssuedCert;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "postern-tls-delivery-"));
  ca = await makeTestCa(join(dir, "ca"));
  good = await ca.issue({ names: ["mx.far.test"] });
  wrongName = await ca.issue({ names: ["elsewhere.test"] });
  expired = await ca.issue({ names: ["mx.far.test"], notBefore: new Date(Date.now() - 3 * DAY), notAfter: new Date(Date.now() - DAY) });
  otherCa = await makeTestCa(join(dir, "other"), "Not Trusted Root");
  untrusted = await otherCa.issue({ names: ["mx.far.test"] });
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function stsPolicy(mode: "enforce" | "testing", mx = ["mx.far.test", "mx2.far.test"]): MtaStsResult {
  const text = `version: STSv1\nmode: ${mode}\n${mx.map((m) => `mx: ${m}`).join("\n")}\nmax_age: 86400\n`;
  return { kind: "policy", fromCache: false, policy: { mode, mx, maxAge: 86400, id: "1", fetchedAt: Date.now(), text } };
}

/** DANE-EE(3) SPKI(1) SHA-256(1) of a certificate (RFC 7671 §5.1). */
function daneEe(cert: IssuedCert): TlsaRecord {
  const spki = new X509Certificate(cert.leafPem).publicKey.export({ type: "spki", format: "der" });
  return { usage: 3, selector: 1, matchingType: 1, data: createHash("sha256").update(spki).digest() };
}

function envelope(extra: Partial<Envelope> = {}): Envelope {
  return {
    id: "0000000000tlspolicy0",
    receivedAt: new Date().toISOString(),
    mailFrom: "sender@example.org",
    size: 0,
    client: { ip: "127.0.0.1", helo: "c.test", listener: "submission", authUser: "sender@example.org" },
    recipients: [{ address: "rcpt@far.test", status: "pending", attempts: 0 }],
    ...extra,
  };
}

function message(): MessageSource {
  const body = Buffer.from("Subject: tls\r\n\r\nhello\r\n");
  return { size: body.length, open: () => Readable.from([body]) };
}

interface Rig {
  sinks: Record<string, Sink>;
  outcomes: TlsSessionOutcome[];
  deliver(extra?: Partial<Envelope>): Promise<RecipientResult>;
  close(): Promise<void>;
}

/** The deliverer options every test here shares: no local domains, so everything goes out. */
const remoteOnly = () => ({
  isLocalDomain: () => false,
  maildirTemplate: join(dir, "mail/{domain}/{localpart}"),
  heloName: "postern.test",
  fsync: false,
  logger: quiet,
});

/** MX hosts of far.test in the order given (preference 10, 20, …), each a sink on 127.0.0.1. */
async function rig(hosts: Record<string, SinkOptions>, sts: MtaStsResult, tlsa: Record<string, TlsaResult> = {}, mxSecure = true): Promise<Rig> {
  const sinks: Record<string, Sink> = {};
  for (const [name, o] of Object.entries(hosts)) sinks[name] = await startSink(o);
  const zone: Record<string, { MX?: { preference: number; exchange: string }[]; A?: string[] }> = {
    "far.test": { MX: Object.keys(hosts).map((exchange, i) => ({ preference: 10 * (i + 1), exchange })) },
  };
  for (const name of Object.keys(hosts)) zone[name] = { A: ["127.0.0.1"] };
  const dns = await startDnsServer(zone);
  const outcomes: TlsSessionOutcome[] = [];
  const deliver = createDeliverer({
    ...remoteOnly(),
    mx: new MxResolver({ servers: [dns.address], ownNames: ["postern.test"], ownAddresses: [] }),
    mxHostPorts: Object.fromEntries(Object.entries(sinks).map(([n, s]) => [n, s.port])),
    ca: ca.certPem,
    timeoutMs: 5000,
    tlsPolicy: new OutboundTlsPolicy({
      mtaSts: { policyFor: async () => sts },
      tlsa: { lookup: async (host) => tlsa[host] ?? { kind: "none", authenticated: true }, mxAuthenticated: async () => mxSecure },
      matchDane: (usable, chain, mxHost, port) => matchDane(usable, chain, mxHost, new Date(), port),
      recorder: { record: (o) => void outcomes.push(o) },
    }),
  });
  return {
    sinks,
    outcomes,
    async deliver(extra = {}) {
      const env = envelope(extra);
      const [result] = await deliver(env, message(), env.recipients);
      return result!;
    },
    async close() {
      for (const s of Object.values(sinks)) await s.close();
      await dns.close();
    },
  };
}

const tlsOf = (c: IssuedCert): SinkOptions => ({ tls: { key: c.keyPem, cert: c.certPem } });

test("MTA-STS enforce with a valid certificate for the MX name: delivered over TLS, a success recorded", async () => {
  const r = await rig({ "mx.far.test": tlsOf(good) }, stsPolicy("enforce"));
  try {
    const result = await r.deliver();
    assert.equal(result.outcome, "delivered", result.detail);
    assert.equal(result.tlsPolicy, "mta-sts-enforce");
    assert.equal(r.sinks["mx.far.test"]!.messages[0]!.tls, true);
    assert.equal(r.outcomes.length, 1);
    assert.equal(r.outcomes[0]!.policy.type, "sts");
    assert.deepEqual(r.outcomes[0]!.policy.mxHosts, ["mx.far.test", "mx2.far.test"]);
    assert.equal(r.outcomes[0]!.failure, undefined);
  } finally {
    await r.close();
  }
});

test("MTA-STS enforce: wrong name, expired, untrusted and stripped STARTTLS defer with the reason; no MAIL is sent", async () => {
  const cases: { sink: SinkOptions; detail: RegExp; resultType: string }[] = [
    {
      sink: tlsOf(wrongName),
      detail: /^451 4\.7\.5 MTA-STS enforce: certificate of mx\.far\.test does not match the name \(.*elsewhere\.test/,
      resultType: "certificate-host-mismatch",
    },
    { sink: tlsOf(expired), detail: /^451 4\.7\.5 MTA-STS enforce: certificate of mx\.far\.test has expired/, resultType: "certificate-expired" },
    { sink: tlsOf(untrusted), detail: /^451 4\.7\.5 MTA-STS enforce: certificate of mx\.far\.test is not trusted/, resultType: "certificate-not-trusted" },
    { sink: {}, detail: /^451 4\.7\.5 STARTTLS not offered by mx\.far\.test under MTA-STS enforce$/, resultType: "starttls-not-supported" },
  ];
  for (const c of cases) {
    const r = await rig({ "mx.far.test": c.sink }, stsPolicy("enforce"));
    try {
      const result = await r.deliver();
      assert.equal(result.outcome, "deferred");
      assert.match(result.detail, c.detail);
      assert.equal(result.tlsPolicy, "mta-sts-enforce");
      assert.ok(!r.sinks["mx.far.test"]!.commands.some((l) => l.startsWith("MAIL")), "no transaction on a refused session");
      assert.ok(!r.sinks["mx.far.test"]!.commands.includes("QUIT") || c.resultType === "starttls-not-supported", "a refused TLS peer gets no QUIT");
      assert.equal(r.outcomes.length, 1);
      assert.equal(r.outcomes[0]!.failure?.resultType, c.resultType);
      assert.equal(r.outcomes[0]!.failure?.receivingMxHostname, "mx.far.test");
    } finally {
      await r.close();
    }
  }
});

test("MTA-STS enforce: a failing host is passed over for the next; MX hosts outside the policy are never used", async () => {
  const r = await rig({ "mx.far.test": tlsOf(wrongName), "mx2.far.test": tlsOf(await ca.issue({ names: ["mx2.far.test"] })) }, stsPolicy("enforce"));
  try {
    const result = await r.deliver();
    assert.equal(result.outcome, "delivered", result.detail);
    assert.equal(r.sinks["mx2.far.test"]!.messages.length, 1);
  } finally {
    await r.close();
  }
  const outside = await rig({ "mx.evil.test": tlsOf(good) }, stsPolicy("enforce"));
  try {
    const result = await outside.deliver();
    assert.equal(result.outcome, "deferred");
    assert.match(result.detail, /no MX host of far\.test matches the policy \(policy mx: mx\.far\.test, mx2\.far\.test; MX hosts: mx\.evil\.test\)/);
    assert.equal(outside.sinks["mx.evil.test"]!.commands.length, 0);
  } finally {
    await outside.close();
  }
});

test("MTA-STS testing: delivered despite a bad certificate or no STARTTLS, and the failure recorded", async () => {
  for (const [sink, resultType] of [
    [tlsOf(wrongName), "certificate-host-mismatch"],
    [{}, "starttls-not-supported"],
  ] as const) {
    const r = await rig({ "mx.far.test": sink }, stsPolicy("testing"));
    try {
      const result = await r.deliver();
      assert.equal(result.outcome, "delivered", result.detail);
      assert.equal(result.tlsPolicy, "mta-sts-testing");
      assert.equal(r.outcomes[0]!.failure?.resultType, resultType);
    } finally {
      await r.close();
    }
  }
});

test("DANE: a matching TLSA record delivers without WebPKI trust; a mismatch or no STARTTLS defers; DANE wins over MTA-STS", async () => {
  const tlsa = (c: IssuedCert): Record<string, TlsaResult> => ({ "mx.far.test": { kind: "records", records: [daneEe(c)], usable: [daneEe(c)] } });
  // The certificate is from a CA nobody trusts: DANE-EE(3) alone authenticates it (RFC 7672 §3.1.1).
  const ok = await rig({ "mx.far.test": tlsOf(untrusted) }, stsPolicy("enforce"), tlsa(untrusted));
  try {
    const result = await ok.deliver();
    assert.equal(result.outcome, "delivered", result.detail);
    assert.equal(result.tlsPolicy, "dane");
    assert.equal(ok.outcomes[0]!.policy.type, "tlsa");
    assert.equal(ok.outcomes[0]!.failure, undefined);
  } finally {
    await ok.close();
  }
  const mismatch = await rig({ "mx.far.test": tlsOf(good) }, { kind: "none" }, tlsa(untrusted));
  try {
    const result = await mismatch.deliver();
    assert.equal(result.outcome, "deferred");
    assert.match(result.detail, /^451 4\.7\.5 DANE: .*mx\.far\.test/);
    // The TLSA name is the one looked up: the port the host is reached on (the sink's here, 25 in production).
    assert.ok(result.detail.includes(`_${mismatch.sinks["mx.far.test"]!.port}._tcp.mx.far.test`), result.detail);
    assert.ok(mismatch.outcomes[0]!.failure);
    assert.equal(mismatch.sinks["mx.far.test"]!.messages.length, 0);
  } finally {
    await mismatch.close();
  }
  const stripped = await rig({ "mx.far.test": {} }, { kind: "none" }, tlsa(good));
  try {
    const result = await stripped.deliver();
    assert.equal(result.outcome, "deferred");
    assert.equal(result.detail, "451 4.7.5 STARTTLS not offered by mx.far.test under DANE");
    assert.equal(stripped.outcomes[0]!.failure?.resultType, "starttls-not-supported");
  } finally {
    await stripped.close();
  }
});

test("DANE: MX records without the AD bit: the host's TLSA is not used, even a mismatching one (RFC 7672 §2.2.1)", async () => {
  const records = { "mx.far.test": { kind: "records", records: [daneEe(untrusted)], usable: [daneEe(untrusted)] } } as Record<string, TlsaResult>;
  const insecureMx = await rig({ "mx.far.test": tlsOf(good) }, { kind: "none" }, records, false);
  try {
    const result = await insecureMx.deliver();
    assert.equal(result.outcome, "delivered", result.detail);
    assert.equal(result.tlsPolicy, "opportunistic");
  } finally {
    await insecureMx.close();
  }
  const secureMx = await rig({ "mx.far.test": tlsOf(good) }, { kind: "none" }, records, true);
  try {
    const result = await secureMx.deliver();
    assert.equal(result.outcome, "deferred", "the same records under an authenticated MX RRset are enforced");
    assert.equal(result.tlsPolicy, "dane");
  } finally {
    await secureMx.close();
  }
});

test("DANE: authenticated TLSA records, none usable: STARTTLS is required (stripped → deferred), the certificate is not checked", async () => {
  const pkixEe = { usage: 1, selector: 1, matchingType: 1, data: Buffer.alloc(32, 2) };
  const unusable = { "mx.far.test": { kind: "records", records: [pkixEe], usable: [] } } as Record<string, TlsaResult>;
  const stripped = await rig({ "mx.far.test": {} }, { kind: "none" }, unusable);
  try {
    const result = await stripped.deliver();
    assert.equal(result.outcome, "deferred");
    assert.match(result.detail, /^451 4\.7\.5 STARTTLS not offered by mx\.far\.test under DANE \(no usable TLSA record/);
    assert.ok(!stripped.sinks["mx.far.test"]!.commands.some((l) => l.startsWith("MAIL")), "no transaction in clear");
  } finally {
    await stripped.close();
  }
  const anyCert = await rig({ "mx.far.test": tlsOf(untrusted) }, { kind: "none" }, unusable);
  try {
    const result = await anyCert.deliver();
    assert.equal(result.outcome, "delivered", result.detail);
    assert.equal(result.tlsPolicy, "dane");
    assert.equal(anyCert.sinks["mx.far.test"]!.messages[0]!.tls, true);
  } finally {
    await anyCert.close();
  }
});

test("DANE: TLSA without the AD bit is ignored (opportunistic); a failed TLSA lookup skips the host", async () => {
  const unsigned = await rig({ "mx.far.test": tlsOf(untrusted) }, { kind: "none" }, { "mx.far.test": { kind: "none", authenticated: false } });
  try {
    const result = await unsigned.deliver();
    assert.equal(result.outcome, "delivered", result.detail);
    assert.equal(result.tlsPolicy, "opportunistic");
    assert.equal(unsigned.outcomes[0]!.policy.type, "no-policy-found");
  } finally {
    await unsigned.close();
  }
  const servfail = await rig(
    { "mx.far.test": tlsOf(good), "mx2.far.test": {} },
    { kind: "none" },
    { "mx.far.test": { kind: "temporary-failure", detail: "SERVFAIL" } },
  );
  try {
    const result = await servfail.deliver();
    assert.equal(result.outcome, "delivered", result.detail);
    assert.equal(servfail.sinks["mx.far.test"]!.commands.length, 0, "the host whose TLSA lookup failed was not contacted");
    assert.equal(servfail.sinks["mx2.far.test"]!.messages.length, 1);
  } finally {
    await servfail.close();
  }
});

test("REQUIRETLS: bounced (5.7.30) without a policy to verify, or to a verified peer without REQUIRETLS; delivered with REQUIRETLS to one that offers it", async () => {
  const noPolicy = await rig({ "mx.far.test": { ...tlsOf(good), requireTlsExtension: true } }, { kind: "none" });
  try {
    const result = await noPolicy.deliver({ requireTls: true });
    assert.equal(result.outcome, "failed");
    assert.match(result.detail, /^550 5\.7\.30 REQUIRETLS support required/);
    assert.equal(noPolicy.sinks["mx.far.test"]!.commands.length, 0);
  } finally {
    await noPolicy.close();
  }
  const noExtension = await rig({ "mx.far.test": tlsOf(good) }, stsPolicy("enforce"));
  try {
    const result = await noExtension.deliver({ requireTls: true });
    assert.equal(result.outcome, "failed");
    assert.match(result.detail, /^550 5\.7\.30 REQUIRETLS support required: mx\.far\.test does not offer REQUIRETLS/);
    assert.ok(!noExtension.sinks["mx.far.test"]!.commands.some((l) => l.startsWith("MAIL")));
  } finally {
    await noExtension.close();
  }
  // A testing policy counts as enforce for REQUIRETLS: a bad certificate defers, it is not sent.
  const testingBad = await rig({ "mx.far.test": { ...tlsOf(wrongName), requireTlsExtension: true } }, stsPolicy("testing"));
  try {
    const result = await testingBad.deliver({ requireTls: true });
    assert.equal(result.outcome, "deferred");
    assert.equal(testingBad.sinks["mx.far.test"]!.messages.length, 0);
  } finally {
    await testingBad.close();
  }
  const verified = await rig({ "mx.far.test": { ...tlsOf(good), requireTlsExtension: true } }, stsPolicy("enforce"));
  try {
    const result = await verified.deliver({ requireTls: true });
    assert.equal(result.outcome, "delivered", result.detail);
    assert.deepEqual(
      verified.sinks["mx.far.test"]!.messages[0]!.mailParams.filter((p) => p === "REQUIRETLS"),
      ["REQUIRETLS"],
    );
  } finally {
    await verified.close();
  }
});

test("our bounce of a REQUIRETLS message carries REQUIRETLS where the peer offers it, and still goes where it does not (RFC 8689 §5)", async () => {
  // No policy: a REQUIRETLS message itself would bounce at the peer without the extension (test above).
  const bounce = { mailFrom: "", dsnOf: "0000000000original00", requireTls: true };
  const without = await rig({ "mx.far.test": tlsOf(good) }, { kind: "none" });
  try {
    const result = await without.deliver(bounce);
    assert.equal(result.outcome, "delivered", result.detail);
    const sent = without.sinks["mx.far.test"]!.messages[0]!;
    assert.equal(sent.from, "");
    assert.ok(!sent.mailParams.includes("REQUIRETLS"), "not offered, so not sent");
  } finally {
    await without.close();
  }
  const offering = await rig({ "mx.far.test": { ...tlsOf(good), requireTlsExtension: true } }, { kind: "none" });
  try {
    const result = await offering.deliver(bounce);
    assert.equal(result.outcome, "delivered", result.detail);
    assert.ok(offering.sinks["mx.far.test"]!.messages[0]!.mailParams.includes("REQUIRETLS"), "§5: the report MUST carry REQUIRETLS");
  } finally {
    await offering.close();
  }
});

test("the sessions that carry TLS-RPT reports are not counted for TLS-RPT (RFC 8460 §5.3)", async () => {
  const r = await rig({ "mx.far.test": tlsOf(wrongName) }, stsPolicy("testing"));
  try {
    const report = await r.deliver({ mailFrom: "", tlsRequiredNo: true, tlsReport: true });
    assert.equal(report.outcome, "delivered", report.detail);
    assert.equal(r.outcomes.length, 0, "the report's own session (a failure here) is left out");
    const other = await r.deliver({ mailFrom: "", tlsRequiredNo: true });
    assert.equal(other.outcome, "delivered", other.detail);
    assert.equal(r.outcomes.length, 1, "any other message's session is counted");
    assert.equal(r.outcomes[0]!.failure?.resultType, "certificate-host-mismatch");
  } finally {
    await r.close();
  }
});

test("TLS-Required: No: an MTA-STS enforce failure does not block delivery, and is still recorded", async () => {
  const r = await rig({ "mx.far.test": tlsOf(wrongName) }, stsPolicy("enforce"));
  try {
    const result = await r.deliver({ tlsRequiredNo: true });
    assert.equal(result.outcome, "delivered", result.detail);
    assert.equal(r.outcomes[0]!.failure?.resultType, "certificate-host-mismatch");
  } finally {
    await r.close();
  }
});

test("certificate errors of a verifying session are TLS failures, not network errors", async () => {
  const sink = await startSink(tlsOf(untrusted));
  try {
    const err = await SmtpClient.connect({
      host: "127.0.0.1",
      port: sink.port,
      tls: "starttls-required",
      servername: "mx.far.test",
      ca: ca.certPem,
      heloName: "postern.test",
      timeoutMs: 5000,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof SmtpClientError);
    assert.equal(err.kind, "tls");
    assert.match(err.message, /certificate/i);
  } finally {
    await sink.close();
  }
});

test("REQUIRETLS through the smarthost: verified TLS and the REQUIRETLS extension are required, else it bounces", async () => {
  const relayWith = async (o: SinkOptions) => {
    const sink = await startSink(o);
    const deliver = createDeliverer({
      ...remoteOnly(),
      // Configured as opportunistic and unverified: REQUIRETLS raises both.
      smarthost: { host: "127.0.0.1", port: sink.port, tls: "starttls-opportunistic", rejectUnauthorized: false, servername: "mx.far.test", ca: ca.certPem },
      timeoutMs: 5000,
    });
    const env = envelope({ requireTls: true });
    const [result] = await deliver(env, message(), env.recipients);
    return { sink, result: result! };
  };
  const offered = await relayWith({ ...tlsOf(good), requireTlsExtension: true });
  try {
    assert.equal(offered.result.outcome, "delivered", offered.result.detail);
    assert.ok(offered.sink.messages[0]!.mailParams.includes("REQUIRETLS"));
  } finally {
    await offered.sink.close();
  }
  const notOffered = await relayWith(tlsOf(good));
  try {
    assert.equal(notOffered.result.outcome, "failed");
    assert.match(notOffered.result.detail, /550 5\.7\.30 REQUIRETLS support required/);
    assert.equal(notOffered.sink.messages.length, 0);
  } finally {
    await notOffered.sink.close();
  }
  // RFC 8689 §4.2.1: no TLS that verifies with the configured relay: returned at once (5.7.10), not retried for days.
  const unverified = await relayWith({ ...tlsOf(untrusted), requireTlsExtension: true });
  try {
    assert.equal(unverified.result.outcome, "failed", unverified.result.detail);
    assert.match(unverified.result.detail, /^550 5\.7\.10 REQUIRETLS: no verified TLS with the relay 127\.0\.0\.1:\d+ /);
    assert.equal(unverified.sink.messages.length, 0, "not sent over TLS it could not verify");
  } finally {
    await unverified.sink.close();
  }
  const noStarttls = await relayWith({ requireTlsExtension: true });
  try {
    assert.equal(noStarttls.result.outcome, "failed", noStarttls.result.detail);
    assert.match(noStarttls.result.detail, /^550 5\.7\.10 REQUIRETLS: no verified TLS with the relay .*STARTTLS/);
    assert.equal(noStarttls.sink.messages.length, 0);
    assert.ok(!noStarttls.sink.commands.some((c) => /^MAIL/i.test(c)), "no MAIL in clear");
  } finally {
    await noStarttls.sink.close();
  }
});
