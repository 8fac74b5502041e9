/**
 * `postern check DOMAIN --dns`, DANE section: TLSA records through the test DNS responder (with
 * and without the AD bit) and a real SMTP peer with STARTTLS presenting a test-CA certificate that
 * the records match or not.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SMTPServer } from "smtp-server";
import { runDnsCheck } from "../../src/check/dns.js";
import { checkResolver } from "../../src/check/dns-lookup.js";
import { type DaneCheckOptions, tlsaItems } from "../../src/check/dns-tlsa.js";
import type { CheckItem } from "../../src/check/types.js";
import { type DnsServer, startDnsServer } from "../delivery/helpers/dns-server.js";
import { makeTestCa } from "../helpers/test-ca.js";
import { baseTestConfig } from "../helpers/test-config.js";
import { runCli } from "../e2e/helpers/postern.js";
import { stringify } from "yaml";

const find = (items: CheckItem[], id: string) => items.find((i) => i.id === id);

describe("postern check --dns: DANE", () => {
  let dir: string;
  let dns: DnsServer;
  let smtp: SMTPServer;
  let port: number;
  let spkiSha256: Buffer;
  let plain: SMTPServer;
  let plainPort: number;
  const opts = (o: Partial<DaneCheckOptions> = {}): DaneCheckOptions => ({
    mode: "trust-ad",
    servers: [dns.address],
    timeoutMs: 2000,
    ehlo: "check.test",
    port,
    ...o,
  });
  const check = (domain: string, o: Partial<DaneCheckOptions> = {}) => tlsaItems(checkResolver([dns.address], 2000), domain, opts(o));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-check-dane-"));
    const ca = await makeTestCa(dir);
    const sub = await ca.intermediate("Postern Test Intermediate");
    const cert = await sub.issue({ names: ["mx.dane.test", "mx.wrong.test", "mx.unsigned.test", "mx.ta.test"] });
    const leaf = new X509Certificate(cert.leafPem);
    spkiSha256 = createHash("sha256")
      .update(leaf.publicKey.export({ type: "spki", format: "der" }))
      .digest();
    const subSha256 = createHash("sha256").update(new X509Certificate(sub.certPem).raw).digest();
    smtp = new SMTPServer({ key: cert.keyPem, cert: cert.certPem, name: "mx.dane.test", logger: false, authOptional: true, disabledCommands: ["AUTH"] });
    await new Promise<void>((resolve) => smtp.listen(0, "127.0.0.1", resolve));
    port = (smtp.server.address() as { port: number }).port;
    plain = new SMTPServer({ name: "mx.plain.test", logger: false, authOptional: true, hideSTARTTLS: true, disabledCommands: ["AUTH", "STARTTLS"] });
    await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", resolve));
    plainPort = (plain.server.address() as { port: number }).port;
    const tlsa = (data: Buffer, usage = 3, selector = 1) => [{ usage, selector, matchingType: 1, data }];
    dns = await startDnsServer({
      "dane.test": { MX: [{ preference: 10, exchange: "mx.dane.test" }], ad: true },
      "mx.dane.test": { A: ["127.0.0.1"] },
      [`_${port}._tcp.mx.dane.test`]: { TLSA: tlsa(spkiSha256), ad: true },
      "ta.test": { MX: [{ preference: 10, exchange: "mx.ta.test" }], ad: true },
      "mx.ta.test": { A: ["127.0.0.1"] },
      [`_${port}._tcp.mx.ta.test`]: { TLSA: tlsa(subSha256, 2, 0), ad: true },
      "wrong.test": { MX: [{ preference: 10, exchange: "mx.wrong.test" }], ad: true },
      "mx.wrong.test": { A: ["127.0.0.1"] },
      [`_${port}._tcp.mx.wrong.test`]: { TLSA: tlsa(Buffer.alloc(32, 7)), ad: true },
      "unsigned.test": { MX: [{ preference: 10, exchange: "mx.unsigned.test" }] },
      "mx.unsigned.test": { A: ["127.0.0.1"] },
      [`_${port}._tcp.mx.unsigned.test`]: { TLSA: tlsa(spkiSha256) },
      // Signed TLSA at an MX host named by unsigned MX records (RFC 7672 §2.2.1).
      "mxunsigned.test": { MX: [{ preference: 10, exchange: "mx.dane.test" }] },
      "none.test": { MX: [{ preference: 10, exchange: "mx.none.test" }] },
      "mx.none.test": { A: ["127.0.0.1"] },
      "broken.test": { MX: [{ preference: 10, exchange: "mx.broken.test" }] },
      "mx.broken.test": { A: ["127.0.0.1"] },
      [`_${port}._tcp.mx.broken.test`]: { servfail: true },
      "plain.test": { MX: [{ preference: 10, exchange: "mx.plain.test" }], ad: true },
      "mx.plain.test": { A: ["127.0.0.1"] },
      [`_${plainPort}._tcp.mx.plain.test`]: { TLSA: tlsa(spkiSha256), ad: true },
      // What the command looks up: port 25 (nothing of ours listens there).
      "_25._tcp.mx.dane.test": { TLSA: tlsa(spkiSha256), ad: true },
    });
  });
  after(async () => {
    await Promise.all([new Promise<void>((r) => smtp.close(() => r())), new Promise<void>((r) => plain.close(() => r())), dns.close()]);
    await rm(dir, { recursive: true, force: true });
  });

  it("authenticated records that match what the MX presents after STARTTLS pass", async () => {
    const items = await check("dane.test");
    assert.deepEqual(
      items.map((i) => [i.id, i.verdict]),
      [
        ["tlsa (mx.dane.test)", "PASS"],
        ["dane-match (mx.dane.test)", "PASS"],
      ],
    );
    assert.match(find(items, "tlsa (mx.dane.test)")!.reason, new RegExp(`\\(authenticated\\): 3 1 1 ${spkiSha256.toString("hex")}`));
    // DANE-TA on the intermediate the peer sends along.
    assert.equal(find(await check("ta.test"), "dane-match (mx.ta.test)")?.verdict, "PASS");
  });

  it("records that match nothing presented are a FAIL with the RFC 8460 result type", async () => {
    const m = find(await check("wrong.test"), "dane-match (mx.wrong.test)")!;
    assert.equal(m.verdict, "FAIL");
    assert.match(m.reason, new RegExp(`no TLSA record of _${port}\\._tcp\\.mx\\.wrong\\.test matches .*\\[validation-failure\\]`));
  });

  it("records without the AD bit are a WARN: senders ignore them", async () => {
    const t = find(await check("unsigned.test"), "tlsa (mx.unsigned.test)")!;
    assert.equal(t.verdict, "WARN");
    assert.match(t.reason, /not DNSSEC-authenticated/);
  });

  it("authenticated TLSA under MX records without the AD bit is a WARN: senders ignore them", async () => {
    const t = find(await check("mxunsigned.test"), "tlsa (mx.dane.test)")!;
    assert.equal(t.verdict, "WARN");
    assert.match(t.reason, /MX records of mxunsigned\.test are not \(no AD bit\).*RFC 7672 §2\.2\.1/);
  });

  it("no records is INFO, a SERVFAIL a FAIL, and an MX without STARTTLS under DANE a FAIL", async () => {
    assert.deepEqual(
      (await check("none.test")).map((i) => [i.id, i.verdict]),
      [["tlsa (mx.none.test)", "INFO"]],
    );
    const broken = find(await check("broken.test"), "tlsa (mx.broken.test)")!;
    assert.equal(broken.verdict, "FAIL");
    assert.match(broken.reason, /SERVFAIL.*will not deliver/);
    const plainMatch = find(await check("plain.test", { port: plainPort }), "dane-match (mx.plain.test)")!;
    assert.equal(plainMatch.verdict, "FAIL");
    assert.match(plainMatch.reason, /STARTTLS is not offered/);
  });

  it("with dns.dnssec off the check says DANE is not used and why, and still shows the records", async () => {
    const items = await check("dane.test", { mode: "off" });
    assert.equal(find(items, "dane")?.verdict, "INFO");
    assert.match(find(items, "dane")!.reason, /not used for delivery.*RFC 6840 §5\.7/);
    assert.equal(find(items, "tlsa (mx.dane.test)")?.verdict, "INFO");
    assert.equal(find(items, "dane-match (mx.dane.test)")?.verdict, "PASS");
    assert.deepEqual(
      (await check("none.test", { mode: "off" })).map((i) => i.id),
      ["dane"],
    );
  });

  it("the command reads dns.dnssec from the configuration", async () => {
    const configPath = join(dir, "postern.yaml");
    const config = { ...baseTestConfig(dir), dns: { servers: [dns.address], dnssec: "trust-ad" } };
    await writeFile(configPath, stringify(config));
    const r = await runCli(["check", "dane.test", "--dns", "--config", configPath, "--json", "--timeout", "2"]);
    const items = (JSON.parse(r.stdout) as { items: CheckItem[] }).items;
    assert.equal(find(items, "tlsa (mx.dane.test)")?.verdict, "PASS", r.stdout + r.stderr);
    assert.equal(find(items, "dane"), undefined, "DANE is on: no 'not used' item");
    await writeFile(configPath, stringify({ ...config, dns: { servers: [dns.address] } }));
    const off = await runCli(["check", "dane.test", "--dns", "--config", configPath, "--json", "--timeout", "2"]);
    assert.equal(find((JSON.parse(off.stdout) as { items: CheckItem[] }).items, "dane")?.verdict, "INFO");
  });

  it("runDnsCheck adds the section when asked", async () => {
    const items = await runDnsCheck({
      domain: "dane.test",
      resolver: checkResolver([dns.address], 2000),
      ips: [],
      localKeys: undefined,
      selectors: [],
      dane: opts(),
    });
    assert.equal(find(items, "dane-match (mx.dane.test)")?.verdict, "PASS");
  });
});
