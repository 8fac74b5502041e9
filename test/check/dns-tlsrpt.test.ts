/**
 * The TLS-RPT section of `postern check DOMAIN --dns` (RFC 8460 §3) against the test DNS responder:
 * a good record passes with its rua list; none, two, a malformed one and a DNS failure each say so.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { tlsRptItems } from "../../src/check/dns-tlsrpt.js";
import { checkResolver } from "../../src/check/dns-lookup.js";
import { type DnsServer, startDnsServer } from "../delivery/helpers/dns-server.js";
import { runCli } from "../e2e/helpers/postern.js";

describe("postern check --dns: TLS-RPT", () => {
  let dns: DnsServer;
  const items = (domain: string) => tlsRptItems(checkResolver([dns.address], 2000), domain);

  before(async () => {
    dns = await startDnsServer({
      "_smtp._tls.good.test": { TXT: ["v=TLSRPTv1; rua=mailto:tls@good.test,https://reports.good.test/v1", "some-other=thing"] },
      "nothing.test": { A: ["192.0.2.1"] },
      "_smtp._tls.two.test": { TXT: ["v=TLSRPTv1; rua=mailto:a@two.test", "v=TLSRPTv1; rua=mailto:b@two.test"] },
      "_smtp._tls.plain.test": { TXT: ["v=TLSRPTv1; rua=http://reports.plain.test/"] },
      "_smtp._tls.norua.test": { TXT: ["v=TLSRPTv1; ruf=mailto:x@norua.test"] },
      "_smtp._tls.broken.test": { servfail: true },
    });
  });
  after(async () => dns.close());

  it("a good record passes and shows where reports go", async () => {
    const [i] = await items("good.test");
    assert.equal(i!.id, "tlsrpt");
    assert.equal(i!.verdict, "PASS");
    assert.match(i!.reason, /reports to mailto:tls@good\.test, https:\/\/reports\.good\.test\/v1$/);
  });

  it("problems are warnings with the fix", async () => {
    const none = (await items("nothing.test"))[0]!;
    assert.equal(none.verdict, "WARN");
    assert.match(none.reason, /no TLS-RPT record at _smtp\._tls\.nothing\.test/);
    assert.match(none.fix!, /v=TLSRPTv1; rua=mailto:tls-reports@nothing\.test/);
    const two = (await items("two.test"))[0]!;
    assert.equal(two.verdict, "WARN");
    assert.match(two.reason, /2 v=TLSRPTv1 records: none is used/);
    const plain = (await items("plain.test"))[0]!;
    assert.equal(plain.verdict, "WARN");
    assert.match(plain.reason, /is not a mailto: or https: URI/);
    assert.match((await items("norua.test"))[0]!.reason, /no rua= field/);
  });

  it("a DNS failure is a FAIL", async () => {
    const [i] = await items("broken.test");
    assert.equal(i!.verdict, "FAIL");
    assert.match(i!.reason, /TXT lookup of _smtp\._tls\.broken\.test failed: ESERVFAIL/);
  });

  it("the command prints the section", async () => {
    const r = await runCli(["check", "good.test", "--dns", "--dns-server", dns.address]);
    assert.match(r.stdout, /^PASS +tlsrpt: "v=TLSRPTv1; rua=mailto:tls@good\.test,https:\/\/reports\.good\.test\/v1": reports to/m, r.stdout + r.stderr);
  });
});
