/**
 * `postern check` on the TLS profile of submission ports (issue 11 item 13): a CBC (or weaker)
 * suite accepted on 587 or 465 is a WARN, TLS 1.0/1.1 accepted is a FAIL (RFC 8996), and a server
 * offering only AEAD suites on TLS ≥ 1.2 gets neither. The servers are small real SMTP servers
 * (test/check/smtp-double.ts) with chosen TLS settings.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { runCli } from "../e2e/helpers/postern.js";
import { startDouble, type SmtpDouble } from "./smtp-double.js";

interface Item {
  id: string;
  verdict: string;
  reason: string;
  fix?: string;
}

async function check(port: number, mode: string, extra: string[] = []): Promise<{ code: number; items: Item[] }> {
  const args = ["check", `127.0.0.1:${port}`, "--json", "--mode", mode, "--domain", "example.org", "--servername", "localhost", "--timeout", "5", ...extra];
  const r = await runCli(args);
  assert.ok(r.stdout.startsWith("{"), `no JSON report: ${r.stdout}${r.stderr}`);
  return { code: r.code, items: (JSON.parse(r.stdout) as { items: Item[] }).items };
}

const find = (items: Item[], id: string): Item => {
  const i = items.find((x) => x.id === id);
  assert.ok(i, `no item ${id}; items: ${items.map((x) => x.id).join(", ")}`);
  return i;
};

// Only AEAD suites for TLS 1.2 (TLS 1.3 suites are all AEAD); the test certificate is ECDSA.
const AEAD_ONLY = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305";

describe("postern check: TLS profile of submission ports", () => {
  const doubles: SmtpDouble[] = [];
  const start = async (...args: Parameters<typeof startDouble>) => {
    const d = await startDouble(...args);
    doubles.push(d);
    return d;
  };
  after(async () => {
    for (const d of doubles) await d.close();
  });

  it("CBC suites accepted on submission with STARTTLS (Node's default list) and on implicit TLS: WARN naming the suite", async () => {
    for (const implicit of [false, true]) {
      const d = await start({ submission: true, implicit });
      const { items } = await check(d.port, implicit ? "submissions" : "submission");
      const i = find(items, "tls-cbc-refused");
      assert.equal(i.verdict, "WARN", `${implicit ? "implicit" : "STARTTLS"}: ${i.reason}`);
      assert.match(i.reason, /CBC/);
      assert.match(i.reason, /AES(128|256)-SHA/);
      assert.ok(i.fix);
      assert.equal(find(items, "tls-1.0-refused").verdict, "PASS");
    }
  });

  it("a submission server restricted to AEAD suites on TLS >= 1.2 gets no TLS warning", async () => {
    for (const implicit of [false, true]) {
      const d = await start({ submission: true, implicit, tls: { ciphers: AEAD_ONLY } });
      const { code, items } = await check(d.port, implicit ? "submissions" : "submission");
      assert.equal(find(items, "tls-cbc-refused").verdict, "PASS", find(items, "tls-cbc-refused").reason);
      // (tls-chain and tls-expiry WARN here: a self-signed test certificate valid for two days.)
      const tlsWarnings = items.filter((i) => ["tls-protocol", "tls-cipher", "tls-1.0-refused", "tls-1.1-refused"].includes(i.id) && i.verdict !== "PASS");
      assert.deepEqual(tlsWarnings, []);
      assert.equal(code, 0, JSON.stringify(items.filter((i) => i.verdict === "FAIL")));
    }
  });

  it("TLS 1.0 and 1.1 accepted on a submission port is a FAIL (RFC 8996), exit 2", async () => {
    const d = await start({ submission: true, implicit: true, tls: { minVersion: "TLSv1", ciphers: "DEFAULT:@SECLEVEL=0" } });
    const { code, items } = await check(d.port, "submissions");
    for (const id of ["tls-1.0-refused", "tls-1.1-refused"]) {
      const i = find(items, id);
      // NOT TESTED only where this machine's OpenSSL cannot offer the old version at all.
      assert.match(i.verdict, /^(FAIL|NOT TESTED)$/, `${id}: ${i.reason}`);
      if (i.verdict === "FAIL") assert.equal(code, 2);
    }
  });

  it("the submissions port checked beside port 25 gets the same TLS probes; the MTA port gets no CBC warning", async () => {
    const mta = await start({});
    const submissions = await start({ submission: true, implicit: true });
    const { items } = await check(mta.port, "mta", ["--submissions-port", String(submissions.port)]);
    // Opportunistic TLS on port 25 (RFC 7435): any cipher beats clear text, so no CBC probe there.
    assert.equal(
      items.find((i) => i.id === "tls-cbc-refused"),
      undefined,
    );
    assert.equal(find(items, "submissions-tls-cbc-refused").verdict, "WARN");
    assert.match(find(items, "submissions-tls-cbc-refused").reason, new RegExp(`port ${submissions.port}`));
    assert.equal(find(items, "submissions-tls-1.0-refused").verdict, "PASS");
  });
});
