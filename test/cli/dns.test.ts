/** `postern dns DOMAIN`: every record, checked line by line, through the real command line. */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { parseConfigObject } from "../../src/config/load.js";
import { dnsRecords } from "../../src/cli/dns.js";
import { mtaStsPolicyId } from "../../src/web/autoconfig-mtasts.js";
import { runCli } from "../e2e/helpers/postern.js";

const records = (out: string) => out.split("\n").filter((l) => l !== "" && !l.startsWith(";"));

describe("postern dns", () => {
  let dir: string;
  let configPath: string;
  const raw = (dataDir: string) => ({
    hostname: "mail.example.org",
    dataDir,
    domains: ["example.org", "Example.NET"],
    listeners: [
      { port: 25, mode: "mta" },
      { port: 587, mode: "submission" },
      { port: 465, mode: "submissions" },
    ],
    web: { port: 443, hostname: "web.example.org", incoming: { imaps: "imap.example.org:993", pop3s: "pop.example.org:995" } },
  });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-dns-"));
    configPath = join(dir, "postern.yaml");
    await writeFile(configPath, stringify(raw(join(dir, "data"))));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("prints every record for a domain of ours, with its DKIM keys", async () => {
    const keygen = await runCli(["dkim", "keygen", "example.org", "--algorithm", "ed25519", "--selector", "s1", "--config", configPath]);
    assert.equal(keygen.code, 0, keygen.stderr);
    const r = await runCli(["dns", "EXAMPLE.org", "--config", configPath]);
    assert.equal(r.code, 0, r.stderr);
    const lines = records(r.stdout);
    const policy = "version: STSv1\r\nmode: testing\r\nmx: mail.example.org\r\nmax_age: 604800\r\n";
    const [dkim, ...rest] = lines.filter((l) => l.includes("_domainkey"));
    assert.equal(rest.length, 0);
    assert.match(dkim!, /^s1\._domainkey\.example\.org\. IN TXT "v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}="$/);
    assert.deepEqual(
      lines.filter((l) => !l.includes("_domainkey")),
      [
        "example.org. IN MX 10 mail.example.org.",
        "_submissions._tcp.example.org. IN SRV 0 1 465 mail.example.org.",
        "_submission._tcp.example.org. IN SRV 0 1 587 mail.example.org.",
        "_imaps._tcp.example.org. IN SRV 0 1 993 imap.example.org.",
        "_pop3s._tcp.example.org. IN SRV 0 1 995 pop.example.org.",
        "autoconfig.example.org. IN CNAME web.example.org.",
        "autodiscover.example.org. IN CNAME web.example.org.",
        "_autodiscover._tcp.example.org. IN SRV 0 1 443 web.example.org.",
        'example.org. IN TXT "v=spf1 mx -all"',
        '_dmarc.example.org. IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@example.org"',
        `_mta-sts.example.org. IN TXT "v=STSv1; id=${mtaStsPolicyId(policy)}"`,
        "mta-sts.example.org. IN CNAME web.example.org.",
        '_smtp._tls.example.org. IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@example.org"',
      ],
    );
    // The policy file to serve, and the suggestions marked as such.
    assert.match(r.stdout, /; {3}version: STSv1\n; {3}mode: testing\n; {3}mx: mail\.example\.org\n; {3}max_age: 604800\n/);
    assert.match(r.stdout, /; SPF \(RFC 7208\): a suggestion/);
    assert.match(r.stdout, /; DMARC \(RFC 7489\): a suggestion/);
  });

  it("says how to make a DKIM key when there is none", async () => {
    const r = await runCli(["dns", "example.net", "--config", configPath]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /; no DKIM key for example\.net yet: postern dkim keygen example\.net/);
    assert.ok(records(r.stdout).includes("example.net. IN MX 10 mail.example.org."));
  });

  it("refuses a domain that is not ours", async () => {
    const r = await runCli(["dns", "evil.test", "--config", configPath]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /evil\.test is not one of our domains/);
    assert.equal(r.stdout, "");
  });

  it("follows the configuration: no IMAP records without web.incoming, the served MTA-STS mode, a web port to forward", () => {
    const base = raw("/tmp/none");
    const config = parseConfigObject({ ...base, web: { port: 8443, mtaSts: { mode: "enforce", maxAgeSec: 86400 } } }, "/tmp");
    const out = dnsRecords(config, "example.org", []);
    assert.ok(!out.some((l) => l.startsWith("_imap")));
    assert.ok(out.includes("autoconfig.example.org. IN CNAME mail.example.org."));
    assert.ok(out.includes(";   mode: enforce"));
    assert.ok(out.includes(";   max_age: 86400"));
    assert.ok(out.some((l) => l.includes("port 8443: clients connect to 443")));
    const policy = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmax_age: 86400\r\n";
    assert.ok(out.includes(`_mta-sts.example.org. IN TXT "v=STSv1; id=${mtaStsPolicyId(policy)}"`));
  });
});
