/**
 * policy.ts with fake ports: which TLS each MX host gets (DANE before MTA-STS, RFC 8461 §2), when
 * a host is skipped, and how REQUIRETLS and "TLS-Required: No" change it (RFC 8689).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { demandsOf, mxPatternMatches, OutboundTlsPolicy, resultTypeOf, type TlsPolicyDeps } from "../../src/delivery/tls-policy/policy.js";
import type { MtaStsResult, TlsaResult, TlsSessionOutcome } from "../../src/delivery/tls-policy/types.js";
import { SmtpClientError } from "../../src/delivery/smtp-connection.js";

const record = { usage: 3, selector: 1, matchingType: 1, data: Buffer.alloc(32, 1) };

function sts(mode: "enforce" | "testing" | "none", mx = ["mx.far.test"]): MtaStsResult {
  const text = `version: STSv1\nmode: ${mode}\n${mx.map((m) => `mx: ${m}`).join("\n")}\nmax_age: 86400\n`;
  return { kind: "policy", fromCache: false, policy: { mode, mx, maxAge: 86400, id: "1", fetchedAt: Date.now(), text } };
}

function deps(tlsa: Record<string, TlsaResult>, outcomes: TlsSessionOutcome[] = [], mxSecure = true): TlsPolicyDeps {
  return {
    tlsa: { lookup: async (host) => tlsa[host] ?? { kind: "none", authenticated: true }, mxAuthenticated: async () => mxSecure },
    matchDane: () => ({ ok: true, matched: "3 1 1" }),
    recorder: { record: (o) => void outcomes.push(o) },
  };
}

const plain = demandsOf({});

test("DANE takes precedence over MTA-STS; unauthenticated or absent TLSA falls back to the MTA-STS policy", async () => {
  const p = new OutboundTlsPolicy(
    deps({
      "mx1.far.test": { kind: "records", records: [record], usable: [record] },
      "mx2.far.test": { kind: "none", authenticated: false },
    }),
  );
  const enforce = sts("enforce", ["*.far.test"]);
  const dane = await p.planHost("far.test", enforce, "mx1.far.test", 25, plain, true);
  assert.equal(dane.kind, "connect");
  assert.equal(dane.policy, "dane");
  assert.ok(dane.kind === "connect" && dane.enforce && dane.starttlsRequired && dane.check === "dane");
  assert.equal(dane.kind === "connect" && dane.rpt?.type, "tlsa");
  const viaSts = await p.planHost("far.test", enforce, "mx2.far.test", 25, plain, true);
  assert.equal(viaSts.policy, "mta-sts-enforce");
  assert.ok(viaSts.kind === "connect" && viaSts.enforce && viaSts.check === "webpki");
  assert.deepEqual(viaSts.kind === "connect" && viaSts.rpt?.mxHosts, ["*.far.test"]);
});

test("MX records without the AD bit: the hosts' TLSA records are not used (RFC 7672 §2.2.1); an unknown status defers", async () => {
  const tlsa: Record<string, TlsaResult> = { "mx.far.test": { kind: "records", records: [record], usable: [record] } };
  const insecure = new OutboundTlsPolicy(deps(tlsa, [], false));
  assert.deepEqual(await insecure.mxStatus("far.test"), { kind: "insecure" });
  const plan = await insecure.planHost("far.test", sts("enforce"), "mx.far.test", 25, plain, false);
  assert.equal(plan.policy, "mta-sts-enforce", "the MTA-STS policy applies instead");
  const opportunistic = await insecure.planHost("far.test", { kind: "none" }, "mx.far.test", 25, plain, false);
  assert.equal(opportunistic.policy, "opportunistic");
  const secure = new OutboundTlsPolicy(deps(tlsa));
  assert.deepEqual(await secure.mxStatus("far.test"), { kind: "secure" });
  const unknown = new OutboundTlsPolicy({
    ...deps(tlsa),
    tlsa: { lookup: async () => ({ kind: "none", authenticated: true }), mxAuthenticated: async () => Promise.reject(new Error("no answer")) },
  });
  const status = await unknown.mxStatus("far.test");
  assert.equal(status.kind, "failed");
  assert.match(status.kind === "failed" ? status.detail : "", /^451 4\.4\.3 DANE: DNSSEC status of the MX records of far\.test unknown \(no answer\)/);
  assert.deepEqual(await new OutboundTlsPolicy({}).mxStatus("far.test"), { kind: "insecure" }, "DANE off: nothing asked");
});

test("authenticated TLSA records, none usable: TLS is required but not authenticated, unless MTA-STS or REQUIRETLS decides", async () => {
  const pkixEe = { usage: 1, selector: 1, matchingType: 1, data: Buffer.alloc(32, 2) };
  const p = new OutboundTlsPolicy(deps({ "mx.far.test": { kind: "records", records: [pkixEe], usable: [] } }));
  const plan = await p.planHost("far.test", { kind: "none" }, "mx.far.test", 25, plain, true);
  assert.equal(plan.policy, "dane");
  assert.ok(plan.kind === "connect" && plan.starttlsRequired && plan.enforce && plan.check === "none");
  assert.equal((await p.planHost("far.test", sts("enforce"), "mx.far.test", 25, plain, true)).policy, "mta-sts-enforce");
  const requireTls = await p.planHost("far.test", { kind: "none" }, "mx.far.test", 25, demandsOf({ requireTls: true }), true);
  assert.ok(requireTls.kind === "skip" && requireTls.requireTlsRefusal, "unauthenticated TLS does not satisfy REQUIRETLS");
  const relaxed = await p.planHost("far.test", { kind: "none" }, "mx.far.test", 25, demandsOf({ tlsRequiredNo: true }), true);
  assert.equal(relaxed.policy, "opportunistic");
});

test("a TLSA lookup that failed skips the host (RFC 7672 §2.2), unless TLS-Required: No", async () => {
  const p = new OutboundTlsPolicy(deps({ "mx.far.test": { kind: "temporary-failure", detail: "SERVFAIL" } }));
  const plan = await p.planHost("far.test", { kind: "none" }, "mx.far.test", 2525, plain, true);
  assert.equal(plan.kind, "skip");
  assert.match(plan.kind === "skip" ? plan.detail : "", /^451 4\.7\.5 DANE: TLSA lookup for _2525\._tcp\.mx\.far\.test failed \(SERVFAIL\)/);
  const relaxed = await p.planHost("far.test", { kind: "none" }, "mx.far.test", 2525, demandsOf({ tlsRequiredNo: true }), true);
  assert.equal(relaxed.kind, "connect");
  assert.equal(relaxed.policy, "opportunistic");
});

test("MTA-STS enforce: hosts outside the policy are skipped, and none matching defers with both lists", async () => {
  const p = new OutboundTlsPolicy({});
  const enforce = sts("enforce", ["mx.far.test", "*.backup.far.test"]);
  const other = await p.planHost("far.test", enforce, "evil.example", 25, plain, true);
  assert.equal(other.kind, "skip");
  assert.equal(p.mxMismatch("far.test", enforce, ["a.backup.far.test", "evil.example"], plain), undefined);
  const why = p.mxMismatch("far.test", enforce, ["evil.example"], plain);
  assert.equal(why, "451 4.7.5 MTA-STS enforce: no MX host of far.test matches the policy (policy mx: mx.far.test, *.backup.far.test; MX hosts: evil.example)");
  // testing and "TLS-Required: No" never exclude hosts
  assert.equal(p.mxMismatch("far.test", sts("testing"), ["evil.example"], plain), undefined);
  assert.equal(p.mxMismatch("far.test", enforce, ["evil.example"], demandsOf({ tlsRequiredNo: true })), undefined);
});

test("testing mode reports without enforcing; mode none and no policy are opportunistic", async () => {
  const p = new OutboundTlsPolicy({});
  const testing = await p.planHost("far.test", sts("testing"), "mx.far.test", 25, plain, true);
  assert.ok(testing.kind === "connect" && !testing.enforce && !testing.starttlsRequired && testing.check === "webpki");
  assert.equal(testing.policy, "mta-sts-testing");
  for (const s of [sts("none"), { kind: "none" } as const]) {
    const plan = await p.planHost("far.test", s, "mx.far.test", 25, plain, true);
    assert.ok(plan.kind === "connect" && plan.policy === "opportunistic" && plan.check === "none");
    assert.equal(plan.kind === "connect" && plan.rpt?.type, "no-policy-found");
  }
  const failed = await p.planHost("far.test", { kind: "fetch-failed", resultType: "sts-policy-fetch-error", detail: "x" }, "mx.far.test", 25, plain, true);
  assert.equal(failed.kind === "connect" && failed.rpt?.type, "sts");
});

test("REQUIRETLS: no DANE and no MTA-STS refuses the host; a testing policy is enforced; TLS-Required: No is ignored with it", async () => {
  const p = new OutboundTlsPolicy({});
  const demands = demandsOf({ requireTls: true, tlsRequiredNo: true });
  assert.deepEqual(demands, { requireTls: true, tlsRequiredNo: false });
  const none = await p.planHost("far.test", { kind: "none" }, "mx.far.test", 25, demands, true);
  assert.ok(none.kind === "skip" && none.requireTlsRefusal);
  assert.match(none.kind === "skip" ? none.detail : "", /^550 5\.7\.30 REQUIRETLS support required/);
  const testing = await p.planHost("far.test", sts("testing"), "mx.far.test", 25, demands, true);
  assert.ok(testing.kind === "connect" && testing.enforce && testing.starttlsRequired);
  assert.ok(p.mxMismatch("far.test", sts("testing"), ["evil.example"], demands));
});

test("a source that throws counts as a failed fetch; a recorder that throws does not stop delivery", async () => {
  const p = new OutboundTlsPolicy({
    mtaSts: {
      policyFor: async () => {
        throw new Error("boom");
      },
    },
    recorder: {
      record: () => {
        throw new Error("disk full");
      },
    },
  });
  const r = await p.forDomain("far.test");
  assert.equal(r.kind, "fetch-failed");
  p.record({ policy: { type: "no-policy-found", domain: "far.test", strings: [] } });
});

test("mx patterns match one extra label only; TLS failures map to RFC 8460 result types", () => {
  assert.ok(mxPatternMatches("mx.far.test", ["*.far.test"]));
  assert.ok(!mxPatternMatches("a.mx.far.test", ["*.far.test"]));
  assert.ok(!mxPatternMatches("far.test", ["*.far.test"]));
  assert.ok(mxPatternMatches("MX.Far.Test.", ["mx.far.test"]));
  const tls = (code: string) => new SmtpClientError("tls", "x", undefined, { cause: { code } });
  assert.equal(resultTypeOf(tls("STARTTLS_NOT_OFFERED")), "starttls-not-supported");
  assert.equal(resultTypeOf(tls("CERT_HAS_EXPIRED")), "certificate-expired");
  assert.equal(resultTypeOf(tls("ERR_TLS_CERT_ALTNAME_INVALID")), "certificate-host-mismatch");
  assert.equal(resultTypeOf(tls("UNABLE_TO_VERIFY_LEAF_SIGNATURE")), "certificate-not-trusted");
  assert.equal(resultTypeOf(tls("ERR_SSL_WRONG_VERSION_NUMBER")), "validation-failure");
  assert.equal(resultTypeOf(new SmtpClientError("network", "ECONNREFUSED")), undefined);
});
