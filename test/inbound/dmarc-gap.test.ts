/**
 * The mailauth 4.x gap (README "Inbound checks"): 4.13.3 reads adkim=s / aspf=s as relaxed, so a
 * sibling host under the same organizational domain passes a strict policy (fixed in mailauth
 * 5.0.0, commit 0c4bab7, which needs Node 22). Postern's DMARC (src/inbound/dmarc.ts) aligns by
 * itself and fails such a message; the first test shows mailauth's own answer for the same case.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { dmarc } from "mailauth";
import { startDnsServer } from "../delivery/helpers/dns-server.js";
import { InboundDns } from "../../src/inbound/dns.js";
import { aligned, dmarcTags, evaluateDmarc } from "../../src/inbound/dmarc.js";

const budget = { maxLookups: 20, budgetMs: 5000 };

test("mailauth 4.13.3 alone passes a strict DMARC policy on an organizational-domain match (the gap)", async () => {
  const dns = await startDnsServer({ "_dmarc.example.org": { TXT: ["v=DMARC1; p=reject; adkim=s; aspf=s"] } });
  try {
    const resolver = new InboundDns({ servers: [dns.address], timeoutMs: 1000, cacheMaxSec: 0 }).forMessage(budget);
    const r = await dmarc({ headerFrom: "ceo@example.org", spfDomains: [], dkimDomains: [{ domain: "mail.example.org" }], resolver: resolver as never });
    assert.ok(r);
    // If this starts failing, mailauth fixed the gap (5.x): Postern's own check can then go.
    assert.equal(r.status.result, "pass", "mailauth 4.13.3 treats adkim=s as relaxed");
  } finally {
    await dns.close();
  }
});

test("Postern fails the same message: strict alignment needs identical domains (RFC 7489 §3.1.1, §3.1.2)", async () => {
  const dns = await startDnsServer({
    "_dmarc.example.org": { TXT: ["v=DMARC1; p=reject; adkim=s; aspf=s"] },
    "_dmarc.example.net": { TXT: ["v=DMARC1; p=reject; adkim = S; aspf=r"] },
  });
  try {
    const resolve = new InboundDns({ servers: [dns.address], timeoutMs: 1000, cacheMaxSec: 60 }).forMessage(budget);
    const sibling = await evaluateDmarc({ headerFrom: ["ceo@example.org"], dkimDomains: ["mail.example.org"], spfDomain: "bounce.example.org", resolve });
    assert.equal(sibling?.result, "fail");
    assert.equal(sibling?.policy, "reject");
    const exact = await evaluateDmarc({ headerFrom: ["ceo@example.org"], dkimDomains: ["example.org"], resolve });
    assert.equal(exact?.result, "pass");
    assert.equal(exact?.aligned.dkim, "example.org");
    // "adkim = S" is strict too (RFC 7489 §6.4: white space around "=", literals without case);
    // aspf=r stays relaxed, so SPF from a sibling host aligns.
    const spaced = await evaluateDmarc({ headerFrom: ["ceo@example.net"], dkimDomains: ["mail.example.net"], resolve });
    assert.equal(spaced?.result, "fail");
    const relaxedSpf = await evaluateDmarc({ headerFrom: ["ceo@example.net"], dkimDomains: [], spfDomain: "bounce.example.net", resolve });
    assert.equal(relaxedSpf?.result, "pass");
  } finally {
    await dns.close();
  }
});

test("a subdomain without its own record takes sp= from the organizational domain; several records at the author domain mean none", async () => {
  const dns = await startDnsServer({
    "_dmarc.example.org": { TXT: ["v=DMARC1; p=none; sp=Reject"] },
    "_dmarc.twice.example.org": { TXT: ["v=DMARC1; p=none", "v=DMARC1; p=quarantine"] },
  });
  try {
    const resolve = new InboundDns({ servers: [dns.address], timeoutMs: 1000, cacheMaxSec: 60 }).forMessage(budget);
    const sub = await evaluateDmarc({ headerFrom: ["a@news.example.org"], dkimDomains: [], resolve });
    assert.equal(sub?.result, "fail");
    assert.equal(sub?.policy, "reject", "sp=Reject, read without case");
    assert.equal(sub?.fromDomain, "news.example.org", "header.from is the From: domain (RFC 8601 §2.7.2)");
    const twice = await evaluateDmarc({ headerFrom: ["a@twice.example.org"], dkimDomains: [], resolve });
    assert.equal(twice?.result, "none");
  } finally {
    await dns.close();
  }
});

test("alignment and tag reading", () => {
  assert.equal(aligned("example.org", "mail.example.org", false), true);
  assert.equal(aligned("example.org", "mail.example.org", true), false);
  assert.equal(aligned("example.org", "EXAMPLE.org.", true), true);
  assert.equal(aligned("example.org", "example.net", false), false);
  const tags = dmarcTags("v=DMARC1;p = Quarantine ; ADKIM=S; rua=mailto:A@example.org");
  assert.equal(tags.get("p"), "quarantine");
  assert.equal(tags.get("adkim"), "s");
  assert.equal(tags.get("rua"), "mailto:A@example.org");
});
