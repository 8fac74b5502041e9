/**
 * TLS-RPT (RFC 8460): counting outcomes per day, domain and policy; the §4.4 report checked field
 * by field against the schema; the day files surviving a new store; the bound on failure details;
 * the strict §3 record parser; sending by https POST to a local HTTPS server with a test CA and by
 * mailto into a real spool, with retries and the final drop.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { createServer as createHttpsServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promises as dns } from "node:dns";
import { buffer } from "node:stream/consumers";
import { gunzipSync } from "node:zlib";
import type { Log } from "../../src/base/log.js";
import { Spool } from "../../src/queue/spool.js";
import { buildReport, parseTlsRptRecord, reportFileName, TlsReportStore, type TlsRptReport, utcDay } from "../../src/delivery/tls-policy/tls-report.js";
import { mailtoAddresses, TlsReportSender } from "../../src/delivery/tls-policy/tls-report-send.js";
import type { TlsRptPolicy, TlsSessionOutcome } from "../../src/delivery/tls-policy/types.js";
import { type DnsServer, startDnsServer } from "../delivery/helpers/dns-server.js";
import { makeTestCa, type TestCa } from "../helpers/test-ca.js";
import { schemaProblems } from "./tls-report-schema.js";

const DAY = 86_400_000;
const T0 = Date.parse("2026-11-30T10:00:00Z");

function memoryLog(): Log & { lines: { level: string; fields: Record<string, unknown> }[] } {
  const lines: { level: string; fields: Record<string, unknown> }[] = [];
  const at = (level: string) => (fields: Record<string, unknown>) => void lines.push({ level, fields });
  return { lines, info: at("info"), warn: at("warn"), error: at("error") };
}

const sts: TlsRptPolicy = {
  type: "sts",
  strings: ["version: STSv1", "mode: enforce", "mx: mx1.far.test", "max_age: 86400"],
  domain: "far.test",
  mxHosts: ["mx1.far.test"],
};
const none: TlsRptPolicy = { type: "no-policy-found", strings: [], domain: "other.test" };

/** Successes and several failure types for far.test, and a domain without a policy. */
function recordMix(store: TlsReportStore): void {
  for (let i = 0; i < 5; i++) store.record({ policy: sts });
  const mismatch: TlsSessionOutcome = {
    policy: sts,
    failure: {
      resultType: "certificate-host-mismatch",
      sendingMtaIp: "192.0.2.1",
      receivingMxHostname: "MX1.far.test",
      receivingIp: "198.51.100.7",
      additionalInformation: "certificate names evil.test",
    },
  };
  store.record(mismatch);
  store.record(mismatch);
  store.record({ policy: sts, failure: { resultType: "starttls-not-supported", receivingMxHostname: "mx1.far.test", receivingIp: "198.51.100.7" } });
  store.record({
    policy: sts,
    failure: { resultType: "certificate-expired", receivingMxHostname: "mx1.far.test", additionalInformation: "https://help.example/expired" },
  });
  store.record({ policy: none });
  store.record({ policy: none });
  store.record({ policy: { ...sts, type: "sts", domain: "far.test" }, failure: { resultType: "sts-policy-fetch-error", failureReasonCode: "HTTP 404" } });
}

describe("TLS-RPT recording and the report", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-tlsrpt-"));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it("counts per domain and policy, and the report validates against RFC 8460 §4.4", async () => {
    const store = new TlsReportStore({ dir: join(dir, "a"), now: () => T0 });
    await store.open();
    recordMix(store);
    const day = store.day("2026-11-30")!;
    assert.deepEqual(Object.keys(day.domains).sort(), ["far.test", "other.test"]);

    const report = buildReport({
      day: "2026-11-30",
      domain: "far.test",
      policies: day.domains["far.test"]!,
      organization: "Example Org",
      contact: "postmaster@mail.example.org",
      hostname: "mail.example.org",
    });
    assert.deepEqual(schemaProblems(report), []);
    assert.deepEqual(report["date-range"], { "start-datetime": "2026-11-30T00:00:00Z", "end-datetime": "2026-11-30T23:59:59Z" });
    assert.match(report["report-id"], /^2026-11-30_far\.test_[0-9a-f]+@mail\.example\.org$/);
    assert.equal(report.policies.length, 1);
    const p = report.policies[0]!;
    assert.deepEqual(p.policy, { "policy-type": "sts", "policy-string": sts.strings, "policy-domain": "far.test", "mx-host": ["mx1.far.test"] });
    assert.deepEqual(p.summary, { "total-successful-session-count": 5, "total-failure-session-count": 5 });
    const details = p["failure-details"]!;
    assert.deepEqual(details[0], {
      "result-type": "certificate-host-mismatch",
      "sending-mta-ip": "192.0.2.1",
      "receiving-mx-hostname": "mx1.far.test",
      "receiving-ip": "198.51.100.7",
      "failed-session-count": 2,
      // Free text is no URI: it goes to failure-reason-code.
      "failure-reason-code": "certificate names evil.test",
    });
    assert.equal(details.find((d) => d["result-type"] === "certificate-expired")!["additional-information"], "https://help.example/expired");
    assert.equal(details.find((d) => d["result-type"] === "sts-policy-fetch-error")!["failure-reason-code"], "HTTP 404");

    const other = buildReport({
      day: "2026-11-30",
      domain: "other.test",
      policies: day.domains["other.test"]!,
      organization: "o",
      contact: "c",
      hostname: "h.test",
    });
    assert.deepEqual(schemaProblems(other), []);
    assert.equal(other.policies[0]!.policy["policy-type"], "no-policy-found");
    assert.equal(other.policies[0]!["failure-details"], undefined);
    assert.equal(
      reportFileName(report, "mail.example.org", "far.test"),
      `mail.example.org!far.test!${Date.parse("2026-11-30T00:00:00Z") / 1000}!${Date.parse("2026-11-30T23:59:59Z") / 1000}!${/_([0-9a-f]+)@/.exec(report["report-id"])![1]}.json.gz`,
    );
    await store.close();
  });

  it("the schema checker catches what a broken report would get wrong", () => {
    const good = buildReport({
      day: "2026-11-30",
      domain: "far.test",
      policies: [{ policy: sts, successes: 1, failures: 1, details: [{ resultType: "validation-failure", count: 1 }] }],
      organization: "o",
      contact: "c",
      hostname: "h.test",
    });
    const broken = structuredClone(good) as Omit<TlsRptReport, "contact-info"> & { "contact-info"?: string };
    broken["date-range"]["start-datetime"] = "2026-11-30 00:00";
    (broken.policies[0]!["failure-details"]![0]! as { "result-type": string })["result-type"] = "tls-broken";
    broken.policies[0]!.summary["total-failure-session-count"] = 1.5;
    delete broken["contact-info"];
    const problems = schemaProblems(broken).join("\n");
    assert.match(problems, /start-datetime not RFC 3339/);
    assert.match(problems, /result-type tls-broken not in RFC 8460/);
    assert.match(problems, /total-failure-session-count not a non-negative integer/);
    assert.match(problems, /contact-info missing/);
  });

  it("days survive a new store instance, and a new day starts a new file", async () => {
    const path = join(dir, "b");
    let now = T0;
    const first = new TlsReportStore({ dir: path, now: () => now });
    await first.open();
    recordMix(first);
    await first.close();
    const second = new TlsReportStore({ dir: path, now: () => now });
    await second.open();
    assert.deepEqual(second.day("2026-11-30"), first.day("2026-11-30"));
    now = T0 + DAY;
    second.record({ policy: sts });
    await second.flush();
    assert.deepEqual((await readdir(path)).sort(), ["2026-11-30.json", "2026-12-01.json"]);
    assert.deepEqual(second.pastDays(now), ["2026-11-30"]);
    await second.close();
  });

  it("an attacker's MX names cannot grow the failure details without bound; record never throws", async () => {
    const log = memoryLog();
    const store = new TlsReportStore({ dir: join(dir, "c"), now: () => T0, maxFailureDetails: 10, log });
    await store.open();
    for (let i = 0; i < 1000; i++)
      store.record({ policy: sts, failure: { resultType: "certificate-host-mismatch", receivingMxHostname: `mx${i}.far.test`, receivingIp: "198.51.100.7" } });
    const counts = store.day(utcDay(T0))!.domains["far.test"]![0]!;
    assert.equal(counts.failures, 1000);
    assert.equal(counts.details.length, 11, "10 itemised, then one entry for the rest");
    assert.equal(counts.details.at(-1)!.count, 990);
    const report = buildReport({ day: utcDay(T0), domain: "far.test", policies: [counts], organization: "o", contact: "c", hostname: "h.test" });
    assert.deepEqual(schemaProblems(report), []);

    store.record(null as unknown as TlsSessionOutcome);
    assert.ok(log.lines.some((l) => l.fields.event === "tlsrpt-record-failed"));
    await store.close();
  });

  it("parses _smtp._tls records strictly (RFC 8460 §3)", () => {
    assert.deepEqual(parseTlsRptRecord("v=TLSRPTv1; rua=mailto:tls@far.test"), { ok: true, rua: ["mailto:tls@far.test"], extensions: {} });
    assert.deepEqual(parseTlsRptRecord("v=TLSRPTv1;rua=mailto:a@far.test, https://r.far.test/x;ext_1=on;"), {
      ok: true,
      rua: ["mailto:a@far.test", "https://r.far.test/x"],
      extensions: { ext_1: "on" },
    });
    for (const bad of [
      "rua=mailto:a@far.test; v=TLSRPTv1",
      "v=TLSRPTv1",
      "v=TLSRPTv1; rua=http://r.far.test/",
      "v=TLSRPTv1; rua=a@far.test",
      "v=TLSRPTv1; rua=mailto:a@far.test; rua=mailto:b@far.test",
      "v=TLSRPTv1; ext=a=b; rua=mailto:a@far.test",
      "v=tlsrptv1; rua=mailto:a@far.test",
    ])
      assert.equal(parseTlsRptRecord(bad).ok, false, bad);
    assert.deepEqual(mailtoAddresses("mailto:a%40x@far.test,b@far.test?subject=x"), ["b@far.test"]);
  });
});

describe("TLS-RPT sending", () => {
  let dir: string;
  let ca: TestCa;
  let dnsServer: DnsServer;
  let https: Server;
  let received: { contentType: string | undefined; body: Buffer; path: string }[];
  let answerStatus = 200;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-tlsrpt-send-"));
    ca = await makeTestCa(join(dir, "ca"));
    const leaf = await ca.issue({ names: ["reports.far.test"] });
    received = [];
    https = createHttpsServer({ key: leaf.keyPem, cert: leaf.certPem }, async (req, res) => {
      received.push({ contentType: req.headers["content-type"], body: await buffer(req), path: req.url ?? "" });
      res.statusCode = answerStatus;
      res.end();
    });
    await new Promise<void>((ok) => https.listen(0, "127.0.0.1", () => ok()));
    const port = (https.address() as AddressInfo).port;
    dnsServer = await startDnsServer({
      "_smtp._tls.far.test": { TXT: [`v=TLSRPTv1; rua=https://reports.far.test:${port}/tlsrpt,mailto:tls-reports@far.test`] },
      "reports.far.test": { A: ["127.0.0.1"] },
      // A record that is not ours is discarded (§3); two of ours: none is used.
      "_smtp._tls.other.test": { TXT: ["v=TLSRPTv1; rua=mailto:a@other.test", "v=TLSRPTv1; rua=mailto:b@other.test"] },
    });
  });
  after(async () => {
    await new Promise<void>((ok) => https.close(() => ok()));
    await dnsServer.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function rig(name: string, opts: { ca?: Buffer } = {}) {
    const log = memoryLog();
    let now = T0;
    const store = new TlsReportStore({ dir: join(dir, name, "state"), now: () => now, log });
    await store.open();
    const spool = new Spool(join(dir, name, "queue"), { fsync: false });
    await spool.init();
    const enqueued: string[] = [];
    const resolver = new dns.Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([dnsServer.address]);
    const sender = new TlsReportSender({
      store,
      resolver,
      openWriter: () => spool.openWriter(),
      enqueue: (id) => void enqueued.push(id),
      organization: "Example Org",
      contact: "postmaster@mail.example.org",
      hostname: "mail.example.org",
      ca: opts.ca ?? Buffer.from(ca.certPem),
      sendAfterMs: 3_600_000,
      log,
      maxAttempts: 3,
      retryMs: 60_000,
      httpsTimeoutMs: 5000,
    });
    return {
      log,
      store,
      spool,
      enqueued,
      sender,
      setNow: (t: number) => (now = t),
      close: async () => {
        await store.close();
        await spool.close();
      },
    };
  }

  it("after the day ends: POSTs the gzip over verified HTTPS and queues the §5.3 message; the day is then forgotten", async () => {
    const r = await rig("ok");
    recordMix(r.store);
    received = [];
    await r.sender.sendDue(T0 + 3_600_000);
    assert.equal(received.length, 0, "not during the day");
    const dayEnd = Date.parse("2026-12-01T00:00:00Z");
    await r.sender.sendDue(dayEnd + 1000);
    assert.equal(received.length, 0, "not before sendAfter");
    r.setNow(dayEnd + 3_600_000);
    await r.sender.sendDue(dayEnd + 3_600_000);

    assert.equal(received.length, 1);
    assert.equal(received[0]!.contentType, "application/tlsrpt+gzip");
    assert.equal(received[0]!.path, "/tlsrpt");
    const posted = JSON.parse(gunzipSync(received[0]!.body).toString("utf8")) as TlsRptReport;
    assert.deepEqual(schemaProblems(posted), []);
    assert.equal(posted.policies[0]!.summary["total-successful-session-count"], 5);

    // mailto: one message in the spool, from the null sender, multipart/report tlsrpt.
    assert.equal(r.enqueued.length, 1);
    const env = await r.spool.readEnvelope(r.enqueued[0]!);
    assert.equal(env.mailFrom, "");
    assert.equal(env.tlsRequiredNo, true, "delivered despite TLS failures (RFC 8460 §5.3)");
    assert.deepEqual(
      env.recipients.map((x) => x.address),
      ["tls-reports@far.test"],
    );
    const text = (await buffer(r.spool.message(env).open())).toString("latin1");
    const [head, ...rest] = text.split("\r\n\r\n");
    const body = rest.join("\r\n\r\n");
    assert.match(
      head!,
      new RegExp(
        `^Subject: Report Domain: far\\.test Submitter: mail\\.example\\.org Report-ID: <${posted["report-id"].replace(/[.]/g, "\\.").replace(/_[0-9a-f]+@/, "_[0-9a-f]+@")}>$`,
        "m",
      ),
    );
    assert.match(head!, /^TLS-Report-Domain: far\.test$/m);
    assert.match(head!, /^TLS-Report-Submitter: mail\.example\.org$/m);
    assert.match(head!, /^TLS-Required: No$/m);
    assert.match(head!, /^Content-Type: multipart\/report; report-type="tlsrpt";\r\n\tboundary="([^"]+)"$/m);
    const boundary = /boundary="([^"]+)"/.exec(head!)![1]!;
    const parts = body.split(`--${boundary}`);
    assert.equal(parts.at(-1), "--\r\n", "closed by the final boundary");
    const attachment = parts.find((p) => p.includes("application/tlsrpt+gzip"))!;
    assert.match(attachment, /^Content-Transfer-Encoding: base64$/m);
    const filename = /filename="([^"]+)"/.exec(attachment)![1]!;
    assert.match(filename, /^mail\.example\.org!far\.test!\d+!\d+!\w+\.json\.gz$/);
    const mailed = JSON.parse(gunzipSync(Buffer.from(attachment.split("\r\n\r\n")[1]!.replace(/\s/g, ""), "base64")).toString("utf8")) as TlsRptReport;
    assert.deepEqual(schemaProblems(mailed), []);
    assert.equal(/[^\x00-\x7f]/.test(text), false, "7-bit");
    assert.ok(
      text.split("\r\n").every((l) => l.length <= 998),
      "RFC 5322 line length",
    );

    // other.test has two records: no report (§3); far.test sent: the day file goes.
    assert.ok(r.log.lines.some((l) => l.fields.event === "tlsrpt-no-record" && l.fields.domain === "other.test"));
    assert.equal(r.store.day("2026-11-30"), undefined);
    assert.deepEqual(await readdir(join(dir, "ok", "state")), []);
    await r.close();
  });

  it("a certificate from another CA is refused; the report is retried, then dropped with a log line", async () => {
    const otherCa = await makeTestCa(join(dir, "other-ca"), "Some Other Root");
    const r = await rig("retry", { ca: Buffer.from(otherCa.certPem) });
    r.store.record({ policy: sts });
    received = [];
    const t = Date.parse("2026-12-01T01:00:00Z");
    await r.sender.sendDue(t);
    assert.equal(received.length, 0, "no POST reached the server past a failed verification");
    assert.ok(r.log.lines.some((l) => l.fields.event === "tlsrpt-deferred"));
    assert.equal(r.enqueued.length, 1, "the mailto: copy went out");
    // Not yet due: nothing happens.
    await r.sender.sendDue(t + 30_000);
    assert.equal(r.log.lines.filter((l) => l.fields.event === "tlsrpt-deferred").length, 1);
    await r.sender.sendDue(t + 60_000);
    await r.sender.sendDue(t + 180_000);
    assert.ok(r.log.lines.some((l) => l.fields.event === "tlsrpt-dropped" && l.fields.attempts === 3));
    assert.equal(r.enqueued.length, 1, "the mailto: copy is not sent again");
    assert.equal(r.store.day("2026-11-30"), undefined);
    await r.close();
  });

  it("an HTTP error is a failure; the retry after it succeeds", async () => {
    const r = await rig("http-error");
    r.store.record({ policy: sts });
    received = [];
    answerStatus = 503;
    const t = Date.parse("2026-12-01T01:00:00Z");
    await r.sender.sendDue(t);
    assert.equal(received.length, 1);
    assert.ok(r.log.lines.some((l) => l.fields.event === "tlsrpt-deferred" && String(l.fields.errors).includes("HTTP 503")));
    answerStatus = 200;
    // The state is on disk: a restarted server carries on.
    await r.store.close();
    const again = new TlsReportStore({ dir: join(dir, "http-error", "state"), now: () => t });
    await again.open();
    assert.equal(again.day("2026-11-30")!.sending["far.test"]!.attempts, 1);
    await again.close();
    await r.sender.sendDue(t + 60_000);
    assert.equal(received.length, 2);
    const [first, retried] = received.map((x) => (JSON.parse(gunzipSync(x.body).toString("utf8")) as TlsRptReport)["report-id"]);
    assert.equal(retried, first, "a retry is the same report");
    assert.ok(r.log.lines.some((l) => l.fields.event === "tlsrpt-sent" && String(l.fields.to).startsWith("https:")));
    assert.equal(r.enqueued.length, 1, "mailto: only once");
    await r.close();
  });
});
