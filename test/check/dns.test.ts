/**
 * `postern check DOMAIN --dns` against the test DNS responder: a well-published domain passes
 * every item and exits 0; each broken record (SPF missing, doubled, not allowing this server; a
 * DKIM key published but different; DMARC p=none or missing) turns its own item WARN or FAIL.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { runDnsCheck } from "../../src/check/dns.js";
import type { LocalDkimKey } from "../../src/check/dns-dkim.js";
import { checkResolver } from "../../src/check/dns-lookup.js";
import { dkimKeysDir, generateKey } from "../../src/dkim/keys.js";
import type { CheckItem } from "../../src/check/types.js";
import { type DnsServer, startDnsServer, type ZoneEntry } from "../delivery/helpers/dns-server.js";
import { baseTestConfig } from "../helpers/test-config.js";
import { runCli } from "../e2e/helpers/postern.js";

const SERVER_IP = "198.51.100.25";
const OTHER_IP = "203.0.113.9";

/** DKIM DNS values as a key store publishes them: RSA as SPKI DER, Ed25519 as the raw key (RFC 8463 §4.2). */
function dkimKey(selector: string, algorithm: "rsa" | "ed25519"): LocalDkimKey {
  const spki =
    algorithm === "rsa"
      ? generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ type: "spki", format: "der" })
      : generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "der" }).subarray(-32);
  return { selector, algorithm, dnsValue: `v=DKIM1; k=${algorithm}; p=${spki.toString("base64")}` };
}

const ed = dkimKey("ed1", "ed25519");
const rsa = dkimKey("rsa1", "rsa");
const otherRsa = dkimKey("rsa1", "rsa");

/** A domain with everything right; each case below breaks one record of a copy of it. */
function goodZone(domain: string): Record<string, ZoneEntry> {
  return {
    [domain]: { MX: [{ preference: 10, exchange: `mail.${domain}` }], TXT: [`v=spf1 ip4:${SERVER_IP} mx -all`, "google-site-verification=abc"] },
    [`mail.${domain}`]: { A: [SERVER_IP] },
    // Long values go out as several character-strings, as a zone file splits them.
    [`ed1._domainkey.${domain}`]: { TXT: [ed.dnsValue] },
    [`rsa1._domainkey.${domain}`]: { TXT: [rsa.dnsValue] },
    [`_dmarc.${domain}`]: { TXT: [`v=DMARC1; p=reject; rua=mailto:dmarc@${domain}`] },
    [`_smtp._tls.${domain}`]: { TXT: [`v=TLSRPTv1; rua=mailto:tls-reports@${domain}`] },
  };
}

const cases: Record<string, (zone: Record<string, ZoneEntry>, d: string) => void> = {
  "good.test": () => undefined,
  "nospf.test": (z, d) => (z[d]!.TXT = ["google-site-verification=abc"]),
  "twospf.test": (z, d) => z[d]!.TXT!.push("v=spf1 include:_spf.example.net ~all"),
  "badspf.test": (z, d) => (z[d]!.TXT = ["v=spf1 ip4:198.51.100.300 mx -all"]),
  "noinclude.test": (z, d) => (z[d]!.TXT = [`v=spf1 include:_spf.${d} -all`]),
  "otherkey.test": (z, d) => (z[`rsa1._domainkey.${d}`] = { TXT: [otherRsa.dnsValue] }),
  "nokey.test": (z, d) => delete z[`ed1._domainkey.${d}`],
  "monitor.test": (z, d) => (z[`_dmarc.${d}`] = { TXT: [`v=DMARC1; p=none; rua=mailto:dmarc@${d}`] }),
  "nodmarc.test": (z, d) => delete z[`_dmarc.${d}`],
  "badmx.test": (z, d) => delete z[`mail.${d}`],
  "anyone.test": (z, d) => (z[d]!.TXT = ["v=spf1 mx +all"]),
  "neutral.test": (z, d) => (z[d]!.TXT = ["v=spf1 mx"]),
  "partial.test": (z, d) => (z[`_dmarc.${d}`] = { TXT: [`v=DMARC1; p=quarantine; pct=20; rua=mailto:dmarc@${d}`] }),
  "broken.test": (z, d) => (z[`_dmarc.${d}`] = { TXT: ["v=DMARC1; p=block"] }),
};

const verdicts = (items: CheckItem[]) => Object.fromEntries(items.map((i) => [i.id, i.verdict]));
const find = (items: CheckItem[], id: string) => items.find((i) => i.id === id);

describe("postern check --dns", () => {
  let dns: DnsServer;
  let dir: string;
  let configPath: string;
  const check = (domain: string, ips = [SERVER_IP], localKeys: LocalDkimKey[] | undefined = [ed, rsa]) =>
    runDnsCheck({ domain, resolver: checkResolver([dns.address], 2000), ips, localKeys, selectors: [] });

  before(async () => {
    const zone: Record<string, ZoneEntry> = {};
    for (const [domain, breakIt] of Object.entries(cases)) {
      const z = goodZone(domain);
      breakIt(z, domain);
      Object.assign(zone, z);
    }
    // The command compares with the key store of the configuration it reads: keys made there for
    // stored.test, the active ones published as the store prints them, the pending one not yet.
    dir = await mkdtemp(join(tmpdir(), "postern-check-dns-"));
    const dataDir = join(dir, "data");
    const config = { ...baseTestConfig(dir), dataDir, dns: { servers: ["127.0.0.1:9"], ownAddresses: [SERVER_IP] } };
    const keysDir = dkimKeysDir({ dataDir });
    Object.assign(zone, goodZone("stored.test"));
    delete zone["ed1._domainkey.stored.test"];
    delete zone["rsa1._domainkey.stored.test"];
    for (const [selector, algorithm] of [
      ["s1ed", "ed25519"],
      ["s1rsa", "rsa"],
    ] as const) {
      zone[`${selector}._domainkey.stored.test`] = { TXT: [generateKey(keysDir, "stored.test", selector, algorithm, { state: "active" }).publicKeyDnsValue] };
    }
    generateKey(keysDir, "stored.test", "s2ed", "ed25519", { state: "pending" });
    dns = await startDnsServer(zone);
    config.dns.servers = [dns.address];
    configPath = join(dir, "postern.yaml");
    await writeFile(configPath, stringify(config));
  });
  after(async () => {
    await dns.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("a well-published domain passes every item, through the configured resolver", async () => {
    const items = await check("good.test");
    assert.deepEqual(
      items.filter((i) => i.verdict !== "PASS"),
      [],
    );
    assert.deepEqual(Object.keys(verdicts(items)), [
      "mx",
      "mx-host (mail.good.test)",
      "spf",
      "spf-evaluation",
      `spf-allows (${SERVER_IP})`,
      "dkim (ed1)",
      "dkim (rsa1)",
      "dmarc",
      "dmarc-reports",
      "tlsrpt",
    ]);
    assert.match(find(items, "spf-evaluation")!.reason, /1 of 10 DNS lookups/);
    assert.ok(dns.queries.includes("_dmarc.good.test TXT"), "asked the test responder, not the system's resolver");
  });

  it("no SPF record is a FAIL", async () => {
    const spf = find(await check("nospf.test"), "spf")!;
    assert.equal(spf.verdict, "FAIL");
    assert.match(spf.reason, /no SPF record/);
  });

  it("two SPF records are a FAIL (a permerror for every message)", async () => {
    const items = await check("twospf.test");
    assert.equal(find(items, "spf")!.verdict, "FAIL");
    assert.match(find(items, "spf")!.reason, /2 SPF records/);
  });

  it("a malformed term and an include without a record are FAILs", async () => {
    const bad = await check("badspf.test");
    assert.equal(find(bad, "spf")!.verdict, "FAIL");
    assert.match(find(bad, "spf")!.reason, /malformed "ip4:198\.51\.100\.300"/);
    const missing = await check("noinclude.test");
    assert.equal(find(missing, "spf")!.verdict, "PASS", "the record itself is well-formed");
    assert.equal(find(missing, "spf-evaluation")!.verdict, "FAIL");
    assert.match(find(missing, "spf-evaluation")!.reason, /permerror/);
  });

  it("an address the SPF record does not allow is a FAIL; the allowed one passes", async () => {
    const items = await check("good.test", [SERVER_IP, OTHER_IP]);
    assert.equal(find(items, `spf-allows (${SERVER_IP})`)!.verdict, "PASS");
    const other = find(items, `spf-allows (${OTHER_IP})`)!;
    assert.equal(other.verdict, "FAIL");
    assert.match(other.reason, /spf=fail/);
    assert.match(other.fix!, new RegExp(`ip4:${OTHER_IP}`));
    // Without an address to test, the item says how to give one.
    assert.equal(find(await check("good.test", []), "spf-allows")!.verdict, "NOT TESTED");
  });

  it("a DKIM selector published with a different key is a FAIL, as is a missing one", async () => {
    const items = await check("otherkey.test");
    assert.equal(find(items, "dkim (ed1)")!.verdict, "PASS");
    const differs = find(items, "dkim (rsa1)")!;
    assert.equal(differs.verdict, "FAIL");
    assert.match(differs.reason, /differs from the local rsa key/);
    assert.match(differs.fix!, /postern dkim dns otherkey\.test/);
    const missing = find(await check("nokey.test"), "dkim (ed1)")!;
    assert.equal(missing.verdict, "FAIL");
    assert.match(missing.reason, /not published/);
    // No local key at all: mail goes out unsigned, which is worth a warning.
    assert.equal(find(await check("good.test", [SERVER_IP], []), "dkim")!.verdict, "WARN");
  });

  it("DMARC p=none is a WARN and a missing record a FAIL", async () => {
    const none = find(await check("monitor.test"), "dmarc")!;
    assert.equal(none.verdict, "WARN");
    assert.match(none.reason, /policy none/);
    const missing = find(await check("nodmarc.test"), "dmarc")!;
    assert.equal(missing.verdict, "FAIL");
    assert.match(missing.reason, /no DMARC record at _dmarc\.nodmarc\.test/);
  });

  it("+all is a FAIL, a record without -all or ~all a WARN", async () => {
    assert.equal(find(await check("anyone.test"), "spf")!.verdict, "FAIL");
    assert.equal(find(await check("neutral.test"), "spf")!.verdict, "WARN");
  });

  it("DMARC pct below 100 is a WARN, an unknown policy a FAIL", async () => {
    const partial = await check("partial.test");
    assert.equal(find(partial, "dmarc")!.verdict, "PASS");
    assert.equal(find(partial, "dmarc-pct")!.verdict, "WARN");
    const broken = await check("broken.test");
    assert.equal(find(broken, "dmarc")!.verdict, "FAIL");
    assert.match(find(broken, "dmarc")!.reason, /p=block is not none, quarantine or reject/);
    assert.equal(find(broken, "dmarc-reports"), undefined, "a malformed record is not read further");
  });

  it("an MX host without an address is a FAIL", async () => {
    const items = await check("badmx.test");
    assert.equal(find(items, "mx")!.verdict, "PASS");
    assert.equal(find(items, "mx-host (mail.badmx.test)")!.verdict, "FAIL");
  });

  it("the command reads dns.servers, dns.ownAddresses and the key store from the config, prints JSON, exits 2 on a FAIL", async () => {
    const good = await runCli(["check", "stored.test", "--dns", "--config", configPath, "--json"]);
    const report = JSON.parse(good.stdout) as { ok: boolean; items: CheckItem[] };
    assert.deepEqual(verdicts(report.items), {
      mx: "PASS",
      "mx-host (mail.stored.test)": "PASS",
      spf: "PASS",
      "spf-evaluation": "PASS",
      [`spf-allows (${SERVER_IP})`]: "PASS",
      "dkim (s1ed)": "PASS",
      "dkim (s1rsa)": "PASS",
      "dkim (s2ed)": "WARN",
      dmarc: "PASS",
      "dmarc-reports": "PASS",
      tlsrpt: "PASS",
      "mta-sts": "INFO",
      dane: "INFO",
    });
    assert.match(find(report.items, "dkim (s2ed)")!.reason, /not published yet/);
    assert.equal(report.ok, true);
    assert.equal(good.code, 0, good.stderr);

    const bad = await runCli(["check", "nodmarc.test", "--dns", "--config", configPath, "--dns-server", dns.address, "--ip", OTHER_IP]);
    assert.equal(bad.code, 2, bad.stdout + bad.stderr);
    assert.match(bad.stdout, /^FAIL +dmarc: no DMARC record/m);
    assert.match(bad.stdout, new RegExp(`^FAIL +spf-allows \\(${OTHER_IP.replace(/\./g, "\\.")}\\): spf=fail`, "m"));
  });

  it("a warning alone exits 0", async () => {
    const r = await runCli(["check", "monitor.test", "--dns", "--dns-server", dns.address, "--config", configPath]);
    assert.match(r.stdout, /^WARN +dmarc:/m);
    assert.doesNotMatch(r.stdout, /^FAIL/m);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
});
