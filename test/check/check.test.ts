/**
 * `postern check` against real Postern instances: the default configuration must show no FAIL on
 * any port, and each deliberately opened hole (AUTH before TLS, mynetworks 0.0.0.0/0) must FAIL.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { runCli, startPostern, type Postern } from "../e2e/helpers/postern.js";

interface Report {
  ok: boolean;
  items: { id: string; verdict: string; reason: string; fix?: string }[];
}

async function check(pg: Postern, port: number, mode: string, extra: string[] = []): Promise<{ code: number; report: Report }> {
  const args = ["check", `127.0.0.1:${port}`, "--json", "--mode", mode, "--domain", "example.org"];
  args.push("--servername", "mail.example.org", "--ca", join(pg.dir, "data/tls/selfsigned-cert.pem"), "--timeout", "5", ...extra);
  const r = await runCli(args);
  assert.ok(r.stdout.startsWith("{"), `no JSON report: ${r.stdout}${r.stderr}`);
  return { code: r.code, report: JSON.parse(r.stdout) as Report };
}

const verdict = (r: Report, id: string) => r.items.find((i) => i.id === id)?.verdict;
const fails = (r: Report) => r.items.filter((i) => i.verdict === "FAIL").map((i) => `${i.id}: ${i.reason}`);

describe("postern check on the default configuration", () => {
  let pg: Postern;
  before(async () => {
    pg = await startPostern();
  });
  after(() => pg.cleanup());

  it("finds nothing to FAIL on the MTA port, and exits 0", async () => {
    const { code, report } = await check(pg, pg.ports.mta, "mta", ["--submissions-port", String(pg.ports.submissions)]);
    assert.deepEqual(fails(report), []);
    assert.equal(code, 0);
    for (const id of [
      "greeting",
      "ehlo",
      "size",
      "pipelining",
      "enhancedstatuscodes",
      "starttls",
      "auth-before-tls",
      "tls-protocol",
      "tls-chain",
      "tls-hostname",
      "tls-expiry",
      "implicit-tls",
      "vrfy",
      "expn",
      "bare-lf",
    ]) {
      assert.equal(verdict(report, id), "PASS", `${id}: ${JSON.stringify(report.items.find((i) => i.id === id))}`);
    }
    // TLS 1.0/1.1: refused by Postern, or reported as untestable by this machine's OpenSSL — never accepted.
    for (const id of ["tls-1.0-refused", "tls-1.1-refused"]) assert.match(verdict(report, id)!, /^(PASS|NOT TESTED)$/);
    // Every relay trick, in clear and after STARTTLS; on 465 MAIL without AUTH is refused outright.
    const relay = (path: string) => report.items.filter((i) => i.id.startsWith(`open-relay (${path}): `));
    assert.ok(relay("clear").length >= 12, JSON.stringify(relay("clear")));
    assert.deepEqual(
      relay("STARTTLS").map((i) => i.id.replace("(STARTTLS)", "")),
      relay("clear").map((i) => i.id.replace("(clear)", "")),
    );
    assert.ok(relay("implicit TLS").length >= 1);
    for (const i of [...relay("clear"), ...relay("STARTTLS"), ...relay("implicit TLS")]) assert.equal(i.verdict, "PASS", `${i.id}: ${i.reason}`);
    for (const id of ["submissions-tls-1.0-refused", "submissions-tls-1.1-refused"]) assert.match(verdict(report, id)!, /^(PASS|NOT TESTED)$/);
    assert.equal(verdict(report, "submissions-tls-cbc-refused"), "PASS");
    assert.equal(verdict(report, "tls-cbc-refused"), undefined, "port 25 is not asked about CBC");
  });

  it("submission (STARTTLS) and submissions (implicit TLS) refuse MAIL without AUTH", async () => {
    for (const [port, mode] of [
      [pg.ports.submission, "submission"],
      [pg.ports.submissions, "submissions"],
    ] as const) {
      const { code, report } = await check(pg, port, mode);
      assert.deepEqual(fails(report), [], mode);
      assert.equal(code, 0);
      assert.equal(verdict(report, "submission-requires-auth"), "PASS", mode);
      assert.equal(verdict(report, "auth-mechanisms"), "PASS", mode);
      // Submission listeners default to AEAD suites only (SECURITY.md 11.13).
      assert.equal(verdict(report, "tls-cbc-refused"), "PASS", `${mode}: ${JSON.stringify(report.items.find((i) => i.id === "tls-cbc-refused"))}`);
    }
  });

  it("a wrong certificate name is reported with the fix", async () => {
    const { report } = await check(pg, pg.ports.submission, "submission", ["--servername", "other.example.net"]);
    const hostname = report.items.find((i) => i.id === "tls-hostname")!;
    assert.equal(hostname.verdict, "WARN");
    assert.match(hostname.fix!, /tls\.cert/);
  });
});

describe("postern check finds deliberately opened holes", () => {
  let pg: Postern;
  before(async () => {
    pg = await startPostern({
      config: {
        mynetworks: ["0.0.0.0/0", "::/0"],
        listeners: [
          { address: "127.0.0.1", port: 0, mode: "mta" },
          { address: "127.0.0.1", port: 0, mode: "submission", authWithoutTls: true },
          { address: "127.0.0.1", port: 0, mode: "submissions" },
        ],
      },
    });
  });
  after(() => pg.cleanup());

  it("AUTH offered before TLS is a FAIL, and the exit code says so", async () => {
    const { code, report } = await check(pg, pg.ports.submission, "submission");
    assert.equal(verdict(report, "auth-before-tls"), "FAIL");
    assert.match(report.items.find((i) => i.id === "auth-before-tls")!.fix!, /authWithoutTls/);
    assert.equal(report.ok, false);
    assert.equal(code, 2);
  });

  it("mynetworks 0.0.0.0/0 makes an open relay; the routing tricks still do not pass", async () => {
    const { code, report } = await check(pg, pg.ports.mta, "mta");
    for (const path of ["clear", "STARTTLS"]) {
      assert.equal(verdict(report, `open-relay (${path}): plain foreign recipient`), "FAIL", path);
      assert.match(report.items.find((i) => i.id === `open-relay (${path}): plain foreign recipient`)!.fix!, /mynetworks/);
      for (const trick of ["percent hack", "bang path", "quoted @", "source route"])
        assert.equal(verdict(report, `open-relay (${path}): ${trick}`), trick === "source route" ? "FAIL" : "PASS", `${path}: ${trick}`);
    }
    assert.equal(code, 2);
    // Nothing was relayed: no probe ever sends DATA.
    assert.equal(pg.logs.filter((l) => l.event === "queued").length, 0);
  });
});
