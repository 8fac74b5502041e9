/**
 * TLS-RPT through the real `postern serve`: yesterday's counts on disk (as a running server left
 * them), outbound.tlsRpt on; at start the report is due, goes through our own queue to the rua's
 * domain's MX (a sink), DKIM-signed, and carries a gzip report that validates against RFC 8460.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { generateKey } from "../../src/dkim/keys.js";
import { TlsReportStore, type TlsRptReport, utcDay } from "../../src/delivery/tls-policy/tls-report.js";
import { startDnsServer } from "../delivery/helpers/dns-server.js";
import { startSink } from "../delivery/helpers/sink.js";
import { startPostern } from "../e2e/helpers/postern.js";
import { schemaProblems } from "./tls-report-schema.js";

test("tls-rpt: yesterday's report is mailed through the queue to the rua, DKIM-signed, and validates", async () => {
  const dir = await mkdtemp(join(tmpdir(), "postern-tlsrpt-e2e-"));
  const sink = await startSink();
  const dns = await startDnsServer({
    "_smtp._tls.far.test": { TXT: ["v=TLSRPTv1; rua=mailto:tls-reports@far.test"] },
    "far.test": { MX: [{ preference: 10, exchange: "mx.far.test" }] },
    "mx.far.test": { A: ["127.0.0.1"] },
  });
  let server: Awaited<ReturnType<typeof startPostern>> | undefined;
  try {
    const stateDir = join(dir, "tls-rpt");
    const yesterday = Date.now() - 86_400_000;
    const store = new TlsReportStore({ dir: stateDir, now: () => yesterday });
    await store.open();
    const policy = {
      type: "sts" as const,
      strings: ["version: STSv1", "mode: testing", "mx: mx.far.test", "max_age: 600"],
      domain: "far.test",
      mxHosts: ["mx.far.test"],
    };
    store.record({ policy });
    store.record({ policy, failure: { resultType: "certificate-expired", receivingMxHostname: "mx.far.test", receivingIp: "127.0.0.1" } });
    await store.close();
    const keysDir = join(dir, "dkim");
    generateKey(keysDir, "mail.example.org", "s1", "ed25519", { state: "active" });

    server = await startPostern({
      config: {
        dns: { servers: [dns.address] },
        dkim: { keysDir },
        outbound: { mxPort: sink.port, tlsRpt: { enabled: true, stateDir, organization: "Example Org", sendAfterMinutes: 0 } },
      },
    });
    await sink.waitForMessages(1);
    const m = sink.messages[0]!;
    assert.equal(m.from, "", "from the null sender");
    assert.deepEqual(m.to, ["tls-reports@far.test"]);
    const text = m.data.toString("latin1");
    const head = text.slice(0, text.indexOf("\r\n\r\n"));
    assert.match(head, /^DKIM-Signature:[\s\S]*d=mail\.example\.org/m);
    // RFC 8460 §5.3: the signature covers the two report fields.
    const signed = /^DKIM-Signature:(?:.*\r\n[ \t].*)*.*/m.exec(head)![0].replace(/\s/g, "");
    const h = /[;:]h=([^;]+)/.exec(signed)![1]!.toLowerCase().split(":");
    assert.ok(h.includes("tls-report-domain") && h.includes("tls-report-submitter"), `h=${h.join(":")}`);
    assert.match(head, /^TLS-Report-Submitter: mail\.example\.org$/m);
    assert.match(head, /^Content-Type: multipart\/report; report-type="tlsrpt";/m);
    assert.match(head, /^Subject: Report Domain: far\.test Submitter: mail\.example\.org Report-ID: <[^>]+@mail\.example\.org>$/m);
    assert.match(head, /^TLS-Report-Domain: far\.test$/m);
    assert.match(head, /report-type="tlsrpt"/);
    const attachment = text.split(/\r\n--tlsrpt-[0-9a-f]+/).find((p) => p.includes("Content-Type: application/tlsrpt+gzip"))!;
    const report = JSON.parse(gunzipSync(Buffer.from(attachment.split("\r\n\r\n")[1]!.replace(/\s/g, ""), "base64")).toString("utf8")) as TlsRptReport;
    assert.deepEqual(schemaProblems(report), []);
    assert.equal(report["organization-name"], "Example Org");
    assert.equal(report["date-range"]["start-datetime"], `${utcDay(yesterday)}T00:00:00Z`);
    assert.deepEqual(report.policies[0]!.summary, { "total-successful-session-count": 1, "total-failure-session-count": 1 });
    await server.waitForLog((l) => l.event === "tlsrpt-sent");
    // Sent everywhere: the day's file is gone, so a restart sends nothing twice.
    await server.waitForLog((l) => l.event === "tlsrpt-day-done");
    assert.deepEqual(await readdir(stateDir), []);
    // RFC 8460 §5.3: the session that carried the report is not counted for the next one, so a
    // graceful stop (which writes the day's counts) leaves no file behind.
    await server.stop();
    assert.deepEqual(await readdir(stateDir), []);
  } finally {
    await server?.cleanup();
    await sink.close();
    await dns.close();
    await rm(dir, { recursive: true, force: true });
  }
});
