/**
 * MtaStsResolver (RFC 8461 §3, §5): the `_mta-sts` TXT record from the test DNS responder, the
 * policy from a local HTTPS server with a test CA, and the cache in memory and on disk. The
 * server counts requests, so every "from the cache" below is proven by a count that did not move.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cacheFileName } from "../../src/delivery/tls-policy/mta-sts-cache.js";
import { createMtaStsResolver, MtaStsResolver, mtaStsCacheDir } from "../../src/delivery/tls-policy/mta-sts.js";
import type { MtaStsPolicy, MtaStsResult } from "../../src/delivery/tls-policy/types.js";
import { type DnsServer, startDnsServer, type ZoneEntry } from "../delivery/helpers/dns-server.js";
import { makeTestCa, type TestCa } from "../helpers/test-ca.js";
import { type PolicyServer, policyText, startPolicyServer } from "./helpers/policy-server.js";

const DOMAINS = [
  "enforce.test",
  "testing.test",
  "none.test",
  "bad.test",
  "redirect.test",
  "html.test",
  "missing.test",
  "wrongname.test",
  "untrusted.test",
  "disk.test",
  "change.test",
  "expiry.test",
  "keep.test",
  "gone.test",
  "withdraw.test",
  "concurrent.test",
  "slow.test",
  "big.test",
  "refresh.test",
  "throttle.test",
];

const policyOf = (r: MtaStsResult): MtaStsPolicy => {
  assert.equal(r.kind, "policy", JSON.stringify(r));
  return (r as { policy: MtaStsPolicy }).policy;
};

describe("MTA-STS resolver", () => {
  let dir: string;
  let ca: TestCa;
  let dns: DnsServer;
  let https: PolicyServer;
  let clock = Date.now();
  const zone: Record<string, ZoneEntry> = {};
  const host = (d: string) => `mta-sts.${d}`;
  const resolver = (cacheDir = join(dir, "cache"), o: { fetchTimeoutMs?: number } = {}) =>
    new MtaStsResolver({ cacheDir, dnsServers: [dns.address], dnsTimeoutMs: 2000, httpsPort: https.port, ca: ca.certPem, now: () => clock, ...o });
  /** A fresh cache directory per test, so each starts with nothing cached. */
  let n = 0;
  const fresh = (o: { fetchTimeoutMs?: number } = {}) => resolver(join(dir, `cache${++n}`), o);
  const setTxt = (d: string, id: string | undefined) => {
    if (id === undefined) delete dns.zone[`_mta-sts.${d}`];
    else dns.zone[`_mta-sts.${d}`] = { TXT: [`v=STSv1; id=${id}`] };
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-mta-sts-"));
    await mkdir(join(dir, "ca"));
    await mkdir(join(dir, "other-ca"));
    ca = await makeTestCa(join(dir, "ca"));
    const stranger = await makeTestCa(join(dir, "other-ca"), "Not Trusted Root");
    const good = await ca.issue({ names: DOMAINS.filter((d) => d !== "wrongname.test" && d !== "untrusted.test").map(host) });
    https = await startPolicyServer(good, {
      [host("wrongname.test")]: await ca.issue({ names: ["mta-sts.someone-else.test"] }),
      [host("untrusted.test")]: await stranger.issue({ names: [host("untrusted.test")] }),
    });
    for (const d of DOMAINS) {
      zone[`_mta-sts.${d}`] = { TXT: ["v=STSv1; id=1"] };
      zone[host(d)] = { A: ["127.0.0.1"] };
      https.routes.set(host(d), { body: policyText("enforce", [`mx.${d}`, `*.mx.${d}`]) });
    }
    zone["nothing.test"] = { A: ["192.0.2.1"] };
    zone["_mta-sts.two.test"] = { TXT: ["v=STSv1; id=1", "v=STSv1; id=2"] };
    https.routes.set(host("testing.test"), { body: policyText("testing", ["mx.testing.test"]) });
    https.routes.set(host("none.test"), { body: policyText("none", []) });
    https.routes.set(host("bad.test"), { body: "version: STSv1\nmode: enforce\nmax_age: 86400\n" });
    https.routes.set(host("redirect.test"), { status: 301, headers: { location: `https://${host("enforce.test")}:${https.port}/.well-known/mta-sts.txt` } });
    https.routes.set(host("html.test"), { contentType: "text/html; charset=utf-8", body: policyText("enforce", ["mx.html.test"]) });
    https.routes.delete(host("missing.test"));
    https.routes.set(host("slow.test"), { hang: true });
    https.routes.set(host("big.test"), { body: `${policyText("enforce", ["mx.big.test"])}${"x: y\n".repeat(20_000)}` });
    dns = await startDnsServer(zone);
  });
  after(async () => {
    await https?.close();
    await dns?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("fetches an enforce policy over verified HTTPS, then answers from the cache", async () => {
    const r = resolver();
    const first = await r.policyFor("Enforce.TEST.");
    const p = policyOf(first);
    assert.equal((first as { fromCache: boolean }).fromCache, false);
    assert.deepEqual(
      { mode: p.mode, mx: p.mx, maxAge: p.maxAge, id: p.id },
      { mode: "enforce", mx: ["mx.enforce.test", "*.mx.enforce.test"], maxAge: 86400, id: "1" },
    );
    assert.equal(p.fetchedAt, clock);
    assert.equal(p.text, policyText("enforce", ["mx.enforce.test", "*.mx.enforce.test"]));
    const again = await r.policyFor("enforce.test");
    assert.equal((again as { fromCache: boolean }).fromCache, true);
    assert.deepEqual(policyOf(again), p);
    assert.equal(https.count(host("enforce.test")), 1, "one fetch for two uses");
    assert.ok(dns.queries.includes("_mta-sts.enforce.test TXT"), "the TXT record asked of the configured DNS");
  });

  it("a testing policy and a none policy are returned as policies (the caller treats none as no MTA-STS)", async () => {
    const r = fresh();
    assert.equal(policyOf(await r.policyFor("testing.test")).mode, "testing");
    const none = policyOf(await r.policyFor("none.test"));
    assert.deepEqual([none.mode, none.mx], ["none", []]);
  });

  it("no TXT record, or two, is no policy and nothing is fetched", async () => {
    const r = fresh();
    const before = https.requests.length;
    assert.deepEqual(await r.policyFor("nothing.test"), { kind: "none" });
    assert.deepEqual(await r.policyFor("nxdomain.test"), { kind: "none" });
    assert.deepEqual(await r.policyFor("two.test"), { kind: "none" });
    assert.equal(https.requests.length, before);
  });

  const failures: [string, string, RegExp][] = [
    ["bad.test", "sts-policy-invalid", /mode enforce without any mx/],
    ["redirect.test", "sts-policy-fetch-error", /HTTP 301 redirect to https:\/\/mta-sts\.enforce\.test.*not followed/],
    ["html.test", "sts-policy-invalid", /media type "text\/html", not text\/plain/],
    ["missing.test", "sts-policy-fetch-error", /HTTP 404/],
    ["wrongname.test", "sts-webpki-invalid", /certificate not valid: ERR_TLS_CERT_ALTNAME_INVALID/],
    ["untrusted.test", "sts-webpki-invalid", /certificate not valid: (UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)/],
    ["big.test", "sts-policy-invalid", /body larger than 65536 bytes/],
  ];
  for (const [domain, resultType, detail] of failures) {
    it(`${domain}: TXT present, no usable policy, nothing cached → fetch-failed ${resultType}`, async () => {
      const r = await fresh().policyFor(domain);
      assert.equal(r.kind, "fetch-failed", JSON.stringify(r));
      const f = r as Extract<MtaStsResult, { kind: "fetch-failed" }>;
      assert.equal(f.resultType, resultType);
      assert.match(f.detail, detail);
    });
  }

  it("a redirect is not followed", async () => {
    const before = https.count(host("enforce.test"));
    await fresh().policyFor("redirect.test");
    assert.equal(https.count(host("redirect.test")) > 0, true);
    assert.equal(https.count(host("enforce.test")), before, "the redirect target was never asked");
  });

  it("a policy host that does not answer in time is a fetch error", async () => {
    const r = await fresh({ fetchTimeoutMs: 300 }).policyFor("slow.test");
    assert.equal(r.kind, "fetch-failed");
    assert.match((r as { detail: string }).detail, /no policy within 300 ms/);
  });

  it("after a failed fetch, the same policy id is not fetched again for five minutes (§3.3)", async () => {
    const start = clock;
    try {
      const r = fresh();
      https.routes.set(host("throttle.test"), { status: 503, body: "busy" });
      assert.equal((await r.policyFor("throttle.test")).kind, "fetch-failed");
      assert.equal((await r.policyFor("throttle.test")).kind, "fetch-failed");
      assert.equal(https.count(host("throttle.test")), 1, "the second use did not ask");
      https.routes.set(host("throttle.test"), { body: policyText("enforce", ["mx.throttle.test"]) });
      setTxt("throttle.test", "2");
      assert.equal(policyOf(await r.policyFor("throttle.test")).id, "2", "a new id is fetched at once");
      assert.equal(https.count(host("throttle.test")), 2);

      setTxt("throttle.test", "3");
      https.routes.set(host("throttle.test"), { status: 503, body: "busy" });
      await r.policyFor("throttle.test");
      await r.policyFor("throttle.test");
      assert.equal(https.count(host("throttle.test")), 3);
      clock = start + 5 * 60_000 + 1;
      https.routes.set(host("throttle.test"), { body: policyText("testing", ["mx.throttle.test"]) });
      const later = await r.policyFor("throttle.test");
      assert.deepEqual([policyOf(later).id, policyOf(later).mode], ["3", "testing"], "tried again after five minutes");
      assert.equal(https.count(host("throttle.test")), 4);
    } finally {
      clock = start;
    }
  });

  it("the cache survives a new resolver instance (disk), written under a safe file name", async () => {
    const cacheDir = join(dir, "disk-cache");
    const p = policyOf(await resolver(cacheDir).policyFor("disk.test"));
    assert.equal(https.count(host("disk.test")), 1);
    assert.deepEqual(await readdir(cacheDir), ["disk.test.json"]);
    assert.deepEqual(JSON.parse(await readFile(join(cacheDir, "disk.test.json"), "utf8")), { domain: "disk.test", policy: p });
    const second = await resolver(cacheDir).policyFor("disk.test");
    assert.deepEqual(second, { kind: "policy", policy: p, fromCache: true });
    assert.equal(https.count(host("disk.test")), 1, "the second instance read the disk, not the network");
    assert.match(cacheFileName("../../etc/passwd"), /^h-[0-9a-f]{40}\.json$/);
    assert.match(cacheFileName("a/b"), /^h-/);
  });

  it("a new TXT id makes it fetch again", async () => {
    const r = fresh();
    assert.equal(policyOf(await r.policyFor("change.test")).id, "1");
    https.routes.set(host("change.test"), { body: policyText("testing", ["other.change.test"], 3600) });
    setTxt("change.test", "2");
    const changed = await r.policyFor("change.test");
    assert.equal((changed as { fromCache: boolean }).fromCache, false);
    assert.deepEqual((({ mode, mx, maxAge, id }) => ({ mode, mx, maxAge, id }))(policyOf(changed)), {
      mode: "testing",
      mx: ["other.change.test"],
      maxAge: 3600,
      id: "2",
    });
    assert.equal(https.count(host("change.test")), 2);
  });

  it("an expired policy is fetched again; one past half its life is refreshed in the background", async () => {
    const r = fresh();
    const start = clock;
    try {
      await r.policyFor("expiry.test");
      clock = start + 86_400_000 + 1;
      const refetched = await r.policyFor("expiry.test");
      assert.equal((refetched as { fromCache: boolean }).fromCache, false);
      assert.equal(policyOf(refetched).fetchedAt, clock);
      assert.equal(https.count(host("expiry.test")), 2, "expired: fetched again");

      const r2 = fresh();
      await r2.policyFor("refresh.test");
      clock += 86_400_000 * 0.6;
      const used = await r2.policyFor("refresh.test");
      assert.equal((used as { fromCache: boolean }).fromCache, true, "the cached policy is used at once");
      await r2.idle();
      assert.equal(https.count(host("refresh.test")), 2, "and refreshed behind it");
      assert.equal(policyOf(await r2.policyFor("refresh.test")).fetchedAt, clock);
    } finally {
      clock = start;
    }
  });

  it("a failed fetch keeps the unexpired cached policy; an expired one is not kept", async () => {
    const start = clock;
    try {
      const r = fresh();
      const cached = policyOf(await r.policyFor("keep.test"));
      setTxt("keep.test", "2");
      https.routes.set(host("keep.test"), { status: 500, body: "oops" });
      assert.deepEqual(await r.policyFor("keep.test"), { kind: "policy", policy: cached, fromCache: true });
      clock = start + 86_400_000 + 1;
      const expired = await r.policyFor("keep.test");
      assert.equal(expired.kind, "fetch-failed");
      assert.equal((expired as { resultType: string }).resultType, "sts-policy-fetch-error");
    } finally {
      clock = start;
    }
  });

  it("a TXT record that goes away does not end a cached policy; expiry does (§5.1)", async () => {
    const start = clock;
    try {
      const cacheDir = join(dir, "gone-cache");
      const r = resolver(cacheDir);
      const cached = policyOf(await r.policyFor("gone.test"));
      setTxt("gone.test", undefined);
      assert.deepEqual(await r.policyFor("gone.test"), { kind: "policy", policy: cached, fromCache: true });
      assert.deepEqual(await resolver(cacheDir).policyFor("gone.test"), { kind: "policy", policy: cached, fromCache: true }, "after a restart too");
      clock = start + 86_400_000 + 1;
      assert.deepEqual(await r.policyFor("gone.test"), { kind: "none" });
      assert.deepEqual(await readdir(cacheDir), [], "the expired policy is removed from disk");
    } finally {
      clock = start;
    }
  });

  it("a fetched mode none replaces the cached enforce policy, on disk too", async () => {
    const cacheDir = join(dir, "withdraw-cache");
    const r = resolver(cacheDir);
    assert.equal(policyOf(await r.policyFor("withdraw.test")).mode, "enforce");
    https.routes.set(host("withdraw.test"), { body: policyText("none", []) });
    setTxt("withdraw.test", "2");
    assert.equal(policyOf(await r.policyFor("withdraw.test")).mode, "none");
    assert.equal(policyOf(await resolver(cacheDir).policyFor("withdraw.test")).mode, "none");
  });

  it("concurrent calls for one domain share one fetch", async () => {
    const r = fresh();
    const results = await Promise.all(Array.from({ length: 8 }, () => r.policyFor("concurrent.test")));
    assert.equal(https.count(host("concurrent.test")), 1);
    for (const x of results) assert.deepEqual(policyOf(x), policyOf(results[0]!));
  });

  it("createMtaStsResolver follows outbound.mtaSts (off, cache directory, CA file fallback)", () => {
    const base = { dataDir: "/var/lib/postern", dns: { servers: [], timeoutMs: 1000 } };
    const m = { enabled: true, httpsPort: 443, fetchTimeoutMs: 10_000 };
    assert.equal(createMtaStsResolver({ ...base, outbound: { mtaSts: { ...m, enabled: false } } }), undefined);
    assert.ok(createMtaStsResolver({ ...base, outbound: { caFile: ca.certFile, mtaSts: m } }) instanceof MtaStsResolver);
    assert.throws(() => createMtaStsResolver({ ...base, outbound: { mtaSts: { ...m, caFile: join(dir, "no-such.pem") } } }), /ENOENT/);
    assert.equal(mtaStsCacheDir({ ...base, outbound: { mtaSts: m } }), "/var/lib/postern/mta-sts");
    assert.equal(mtaStsCacheDir({ ...base, outbound: { mtaSts: { ...m, cacheDir: "sts" } } }), "/var/lib/postern/sts");
    assert.equal(mtaStsCacheDir({ ...base, outbound: { mtaSts: { ...m, cacheDir: "/tmp/sts" } } }), "/tmp/sts");
  });
});
