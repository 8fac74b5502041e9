/** The inbound checks' DNS (src/inbound/dns.ts): cached with TTLs, bounded per message. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startDnsServer } from "../delivery/helpers/dns-server.js";
import { InboundDns } from "../../src/inbound/dns.js";

test("answers are cached: A/AAAA for their TTL (the responder says 60 s), TXT and NXDOMAIN for cacheMaxSec", async () => {
  const dns = await startDnsServer({ "a.example.net": { A: ["192.0.2.1"], TXT: ["v=spf1 -all"] } });
  try {
    let clock = 1_000_000;
    const cache = new InboundDns({ servers: [dns.address], timeoutMs: 1000, cacheMaxSec: 300, now: () => clock });
    const r = cache.forMessage({ maxLookups: 10, budgetMs: 5000 });
    assert.deepEqual(await r("a.example.net", "A"), ["192.0.2.1"]);
    assert.deepEqual(await r("a.example.net", "TXT"), [["v=spf1 -all"]]);
    await assert.rejects(r("none.example.net", "TXT"), { code: "ENOTFOUND" });
    assert.equal(dns.queries.length, 3);
    const next = cache.forMessage({ maxLookups: 10, budgetMs: 5000 });
    await next("A.example.net.", "A");
    await next("a.example.net", "txt");
    await assert.rejects(next("none.example.net", "TXT"), { code: "ENOTFOUND" });
    assert.equal(dns.queries.length, 3, "all from the cache, another message's resolver too");
    assert.equal(next.used(), 0, "cached answers cost no budget");
    clock += 61_000; // past the A record's TTL, within cacheMaxSec
    const later = cache.forMessage({ maxLookups: 10, budgetMs: 5000 });
    await later("a.example.net", "A");
    await later("a.example.net", "TXT");
    assert.deepEqual(dns.queries.slice(3), ["a.example.net A"]);
  } finally {
    await dns.close();
  }
});

test("a message's lookups are bounded: past maxLookups every query fails as a temporary error", async () => {
  const dns = await startDnsServer({ "a.example.net": { TXT: ["x"] }, "b.example.net": { TXT: ["y"] }, "c.example.net": { TXT: ["z"] } });
  try {
    const r = new InboundDns({ servers: [dns.address], timeoutMs: 1000, cacheMaxSec: 0 }).forMessage({ maxLookups: 2, budgetMs: 5000 });
    await r("a.example.net", "TXT");
    await r("b.example.net", "TXT");
    await assert.rejects(r("c.example.net", "TXT"), { code: "ETIMEOUT", message: /more than 2 lookups/ });
    assert.equal(dns.queries.length, 2, "the third was never sent");
  } finally {
    await dns.close();
  }
});

test("a message's lookups are bounded in time: a server that never answers costs budgetMs, not more", async () => {
  // A UDP port that drops every query: a silent server.
  const { createSocket } = await import("node:dgram");
  const silent = createSocket("udp4");
  await new Promise<void>((ok) => silent.bind(0, "127.0.0.1", () => ok()));
  try {
    const cache = new InboundDns({ servers: [`127.0.0.1:${silent.address().port}`], timeoutMs: 5000, cacheMaxSec: 60 });
    const r = cache.forMessage({ maxLookups: 10, budgetMs: 200 });
    const started = Date.now();
    await assert.rejects(r("slow.example.net", "TXT"), { code: "ETIMEOUT", message: /over 200 ms/ });
    assert.ok(Date.now() - started < 2000);
    await assert.rejects(r("slow2.example.net", "TXT"), { code: "ETIMEOUT" });
  } finally {
    silent.close();
  }
});
