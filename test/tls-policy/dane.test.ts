/**
 * matchDane (RFC 7672 §3) on chains made by the test CA: DANE-EE pins the leaf whatever its name
 * and dates; DANE-TA needs the leaf to chain to the matching certificate, be valid now and name
 * the MX host; usages 0/1 alone are tlsa-invalid.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { matchDane, tlsaMatches } from "../../src/delivery/tls-policy/dane.js";
import type { TlsaRecord } from "../../src/delivery/tls-policy/types.js";
import { makeTestCa } from "../helpers/test-ca.js";

const DAY = 86_400_000;
const MX = "mx.example.net";

/** The certificates of a PEM bundle, in order. */
function certsOf(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
}

const spki = (c: X509Certificate) => c.publicKey.export({ type: "spki", format: "der" });
const digest = (alg: string, b: Buffer) => createHash(alg).update(b).digest();
const rec = (usage: number, selector: number, matchingType: number, data: Buffer): TlsaRecord => ({ usage, selector, matchingType, data });

describe("matchDane", () => {
  let dir: string;
  /** mx.example.net from the root directly; through an intermediate; expired; for another name; an unrelated one. */
  let direct: X509Certificate[];
  let viaIntermediate: X509Certificate[];
  let expired: X509Certificate[];
  let otherName: X509Certificate[];
  let unrelated: X509Certificate[];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-dane-"));
    const ca = await makeTestCa(dir);
    const sub = await ca.intermediate("Postern Test Intermediate");
    direct = certsOf((await ca.issue({ names: [MX] })).certPem);
    viaIntermediate = certsOf((await sub.issue({ names: [MX] })).certPem);
    expired = certsOf((await sub.issue({ names: [MX], notBefore: new Date(Date.now() - 3 * DAY), notAfter: new Date(Date.now() - DAY) })).certPem);
    otherName = certsOf((await sub.issue({ names: ["other.example.net"] })).certPem);
    const ca2 = await makeTestCa(await mkdtemp(join(dir, "ca2-")), "Other Root");
    unrelated = certsOf((await (await ca2.intermediate("Postern Test Intermediate")).issue({ names: [MX] })).certPem);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("DANE-EE 3 1 1, 3 0 1, 3 1 2 and 3 0 0 match the leaf", () => {
    const leaf = direct[0]!;
    for (const r of [
      rec(3, 1, 1, digest("sha256", spki(leaf))),
      rec(3, 0, 1, digest("sha256", leaf.raw)),
      rec(3, 1, 2, digest("sha512", spki(leaf))),
      rec(3, 0, 0, leaf.raw),
    ]) {
      const v = matchDane([r], direct, MX);
      assert.ok(v.ok, `${r.usage} ${r.selector} ${r.matchingType}: ${JSON.stringify(v)}`);
      assert.match(v.matched, new RegExp(`^${r.usage} ${r.selector} ${r.matchingType} ${r.data.toString("hex").slice(0, 16)}`));
    }
  });

  it("DANE-EE checks neither the name nor the dates (RFC 7672 §3.1.1)", () => {
    assert.ok(matchDane([rec(3, 1, 1, digest("sha256", spki(expired[0]!)))], expired, MX).ok);
    assert.ok(matchDane([rec(3, 1, 1, digest("sha256", spki(otherName[0]!)))], otherName, MX).ok);
  });

  it("a record for another key is a validation-failure naming the TLSA and the records", () => {
    const r = rec(3, 1, 1, digest("sha256", spki(unrelated[0]!)));
    const v = matchDane([r], direct, MX);
    assert.equal(v.ok, false);
    assert.ok(!v.ok);
    assert.equal(v.resultType, "validation-failure");
    assert.match(v.detail, /no TLSA record of _25\._tcp\.mx\.example\.net matches the certificate presented \(3 1 1 [0-9a-f]+…\)/);
  });

  it("DANE-TA 2 0 1 of the intermediate: the leaf chains to it and names the MX host", () => {
    const intermediate = viaIntermediate[1]!;
    const ta = rec(2, 0, 1, digest("sha256", intermediate.raw));
    assert.ok(tlsaMatches(ta, intermediate));
    const v = matchDane([ta], viaIntermediate, MX);
    assert.ok(v.ok, JSON.stringify(v));
    // A DANE-TA record matching nothing in a chain from the root directly (no intermediate presented).
    assert.equal(matchDane([ta], direct, MX).ok, false);
  });

  it("DANE-TA with a leaf for another name is a certificate-host-mismatch", () => {
    const v = matchDane([rec(2, 1, 1, digest("sha256", spki(otherName[1]!)))], otherName, MX);
    assert.ok(!v.ok);
    assert.equal(v.resultType, "certificate-host-mismatch");
    assert.match(v.detail, /does not name it/);
    assert.ok(matchDane([rec(2, 1, 1, digest("sha256", spki(otherName[1]!)))], otherName, "other.example.net").ok);
  });

  it("DANE-TA with an expired leaf is certificate-expired", () => {
    const v = matchDane([rec(2, 0, 1, digest("sha256", expired[1]!.raw))], expired, MX);
    assert.ok(!v.ok);
    assert.equal(v.resultType, "certificate-expired");
    // The same leaf was valid a couple of days ago.
    assert.ok(matchDane([rec(2, 0, 1, digest("sha256", expired[1]!.raw))], expired, MX, new Date(Date.now() - 2 * DAY)).ok);
  });

  it("DANE-TA: a matching certificate the leaf is not signed by does not count", () => {
    // The unrelated leaf presented with our intermediate (same name, other key) appended.
    const forged = [unrelated[0]!, viaIntermediate[1]!];
    const v = matchDane([rec(2, 0, 1, digest("sha256", viaIntermediate[1]!.raw))], forged, MX);
    assert.ok(!v.ok);
    assert.equal(v.resultType, "validation-failure");
    assert.match(v.detail, /does not chain/);
  });

  it("only usage 0/1 records are tlsa-invalid; an empty chain fails", () => {
    const leaf = direct[0]!;
    const v = matchDane([rec(1, 1, 1, digest("sha256", spki(leaf))), rec(0, 0, 1, digest("sha256", leaf.raw))], direct, MX);
    assert.ok(!v.ok);
    assert.equal(v.resultType, "tlsa-invalid");
    const none = matchDane([rec(3, 1, 1, digest("sha256", spki(leaf)))], [], MX);
    assert.ok(!none.ok);
    assert.equal(none.resultType, "validation-failure");
  });

  it("one matching record among others is enough", () => {
    const leaf = viaIntermediate[0]!;
    const v = matchDane([rec(3, 1, 1, Buffer.alloc(32)), rec(2, 0, 1, Buffer.alloc(32)), rec(3, 1, 2, digest("sha512", spki(leaf)))], viaIntermediate, MX);
    assert.ok(v.ok);
    assert.match(v.matched, /^3 1 2 /);
  });
});
