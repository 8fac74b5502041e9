/**
 * The MTA-STS section of `postern check DOMAIN --dns` (RFC 8461): the TXT record, the policy
 * fetched from a local HTTPS server with a test CA, and each MX host against the policy — through
 * the function and through the command with a configuration (outbound.mtaSts.httpsPort, caFile).
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { checkResolver } from "../../src/check/dns-lookup.js";
import { mtaStsItems } from "../../src/check/dns-mtasts.js";
import type { CheckItem } from "../../src/check/types.js";
import { type DnsServer, startDnsServer, type ZoneEntry } from "../delivery/helpers/dns-server.js";
import { runCli } from "../e2e/helpers/postern.js";
import { makeTestCa, type TestCa } from "../helpers/test-ca.js";
import { baseTestConfig } from "../helpers/test-config.js";
import { type PolicyServer, policyText, startPolicyServer } from "../tls-policy/helpers/policy-server.js";

const verdicts = (items: CheckItem[]) => Object.fromEntries(items.map((i) => [i.id, i.verdict]));
const find = (items: CheckItem[], id: string) => items.find((i) => i.id === id);

describe("postern check --dns: MTA-STS", () => {
  let dir: string;
  let ca: TestCa;
  let dns: DnsServer;
  let https: PolicyServer;
  const domains = ["good.test", "offmx.test", "trial.test", "broken.test", "untrusted.test", "short.test", "implicit.test"];
  const check = (domain: string) => mtaStsItems(checkResolver([dns.address], 2000), domain, { httpsPort: https.port, ca: ca.certPem, timeoutMs: 5000 });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-check-mtasts-"));
    await mkdir(join(dir, "ca"));
    await mkdir(join(dir, "other"));
    ca = await makeTestCa(join(dir, "ca"));
    const stranger = await makeTestCa(join(dir, "other"), "Stranger Root");
    https = await startPolicyServer(await ca.issue({ names: domains.map((d) => `mta-sts.${d}`) }), {
      "mta-sts.untrusted.test": await stranger.issue({ names: ["mta-sts.untrusted.test"] }),
    });
    const zone: Record<string, ZoneEntry> = {};
    for (const d of domains) {
      zone[d] = {
        MX: [
          { preference: 10, exchange: `mx1.${d}` },
          { preference: 20, exchange: `backup.${d}` },
        ],
      };
      zone[`_mta-sts.${d}`] = { TXT: ["v=STSv1; id=20260101"] };
      zone[`mta-sts.${d}`] = { A: ["127.0.0.1"] };
      https.routes.set(`mta-sts.${d}`, { body: policyText("enforce", [`mx1.${d}`, `*.${d}`], 604800) });
    }
    https.routes.set("mta-sts.offmx.test", { body: policyText("enforce", ["mx1.offmx.test"], 604800) });
    https.routes.set("mta-sts.trial.test", { body: policyText("testing", ["mx1.trial.test"], 604800) });
    https.routes.delete("mta-sts.broken.test");
    https.routes.set("mta-sts.short.test", { body: policyText("enforce", ["*.short.test"], 600) });
    zone["implicit.test"] = { A: ["192.0.2.7"] };
    https.routes.set("mta-sts.implicit.test", { body: policyText("enforce", ["mx.implicit.test"], 604800) });
    zone["plain.test"] = { MX: [{ preference: 10, exchange: "mx.plain.test" }] };
    zone["_mta-sts.double.test"] = { TXT: ["v=STSv1; id=1", "v=STSv1; id=2"] };
    dns = await startDnsServer(zone);
  });
  after(async () => {
    await https?.close();
    await dns?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("a good enforce policy covering every MX passes every item", async () => {
    const items = await check("good.test");
    assert.deepEqual(verdicts(items), {
      "mta-sts": "PASS",
      "mta-sts-policy": "PASS",
      "mta-sts-mx (mx1.good.test)": "PASS",
      "mta-sts-mx (backup.good.test)": "PASS",
    });
    assert.equal(find(items, "mta-sts")!.reason, '"v=STSv1; id=20260101"');
    assert.match(find(items, "mta-sts-policy")!.reason, /mode enforce, mx mx1\.good\.test, \*\.good\.test, max_age 604800 \(HTTP 200\)/);
  });

  it("an MX outside an enforce policy is a FAIL; outside a testing policy a WARN", async () => {
    const off = find(await check("offmx.test"), "mta-sts-mx (backup.offmx.test)")!;
    assert.equal(off.verdict, "FAIL");
    assert.match(off.reason, /will not deliver to it/);
    assert.match(off.fix!, /mx: backup\.offmx\.test/);
    const trial = await check("trial.test");
    assert.equal(find(trial, "mta-sts-policy")!.verdict, "INFO");
    assert.equal(find(trial, "mta-sts-mx (mx1.trial.test)")!.verdict, "PASS");
    assert.equal(find(trial, "mta-sts-mx (backup.trial.test)")!.verdict, "WARN");
  });

  it("without MX records the domain itself is the MX the policy must name", async () => {
    assert.equal(find(await check("implicit.test"), "mta-sts-mx (implicit.test)")!.verdict, "FAIL");
  });

  it("a policy that cannot be fetched or verified is a WARN with the TLS-RPT result type", async () => {
    const broken = find(await check("broken.test"), "mta-sts-policy")!;
    assert.equal(broken.verdict, "WARN");
    assert.match(broken.reason, /^sts-policy-fetch-error: .*HTTP 404/);
    const untrusted = find(await check("untrusted.test"), "mta-sts-policy")!;
    assert.equal(untrusted.verdict, "WARN");
    assert.match(untrusted.reason, /^sts-webpki-invalid: /);
    assert.match(untrusted.fix!, /certificate/);
  });

  it("a max_age under a day is a WARN", async () => {
    assert.equal(find(await check("short.test"), "mta-sts-max-age")!.verdict, "WARN");
    assert.equal(find(await check("good.test"), "mta-sts-max-age"), undefined);
  });

  it("no record is INFO, two records a WARN, and no HTTPS is tried", async () => {
    const before = https.requests.length;
    assert.deepEqual(verdicts(await check("plain.test")), { "mta-sts": "INFO" });
    const two = await check("double.test");
    assert.deepEqual(verdicts(two), { "mta-sts": "WARN" });
    assert.match(two[0]!.reason, /2 "v=STSv1" records/);
    assert.equal(https.requests.length, before);
  });

  it("the command fetches with outbound.mtaSts.httpsPort and caFile from the configuration", async () => {
    const config = {
      ...baseTestConfig(dir),
      dns: { servers: [dns.address] },
      outbound: { mtaSts: { httpsPort: https.port, caFile: ca.certFile } },
    };
    const configPath = join(dir, "postern.yaml");
    await writeFile(configPath, stringify(config));
    const r = await runCli(["check", "offmx.test", "--dns", "--config", configPath, "--json"]);
    const report = JSON.parse(r.stdout) as { items: CheckItem[] };
    const items = verdicts(report.items);
    assert.equal(items["mta-sts-policy"], "PASS", r.stdout + r.stderr);
    assert.equal(items["mta-sts-mx (backup.offmx.test)"], "FAIL");
    assert.equal(r.code, 2);
  });
});
