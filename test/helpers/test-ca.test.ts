import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { makeTestCa } from "./test-ca.js";

test("the test CA issues leaves that chain to it, expired ones too, and through an intermediate", async () => {
  const ca = await makeTestCa(await mkdtemp(join(tmpdir(), "ca-")));
  const root = new X509Certificate(ca.certPem);
  const leaf = await ca.issue({ names: ["mx.example.net", "*.example.net"] });
  const x = new X509Certificate(leaf.leafPem);
  assert.ok(x.checkIssued(root) && x.verify(root.publicKey));
  assert.equal(x.checkHost("mx.example.net"), "mx.example.net");
  const old = await ca.issue({ names: ["old.example.net"], notBefore: new Date(Date.now() - 10 * 86400_000), notAfter: new Date(Date.now() - 5 * 86400_000) });
  assert.ok(Date.parse(new X509Certificate(old.leafPem).validTo) < Date.now());
  const sub = await ca.intermediate("Sub CA");
  const viaSub = await sub.issue({ names: ["a.example.net"] });
  const subCert = new X509Certificate(sub.certPem);
  assert.ok(subCert.verify(root.publicKey));
  assert.ok(new X509Certificate(viaSub.leafPem).verify(subCert.publicKey));
  assert.equal((viaSub.certPem.match(/BEGIN CERTIFICATE/g) ?? []).length, 2);
});
