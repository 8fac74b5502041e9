/**
 * REQUIRETLS in the queue (RFC 8689): the envelope's tags survive the spool (written, read back,
 * updated under a lease), and the reports about a tagged message follow §5 (header section only,
 * from the null sender, not themselves sent with REQUIRETLS) and §6 (a "TLS-Required: No" original makes a report
 * that asks the same). Real spool, real queue runner, reports read with a standard parser.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { buffer } from "node:stream/consumers";
import { Spool } from "../../src/queue/spool.js";
import type { Envelope, EnvelopeRecipient, MessageSource, RecipientResult } from "../../src/queue/types.js";
import { dsnRig } from "../queue/helpers.js";
import { readDsn } from "../queue/dsn-reader.js";

const T0 = Date.parse("2026-03-01T12:00:00Z");
const BODY = "From: Alice <alice@example.net>\r\nTo: x@remote.test\r\nSubject: sealed numbers\r\n\r\nThe secret body line.\r\n";

/** bad* → 550 5.7.30 (no peer offers REQUIRETLS), slow* → 451, anything else → 250. */
async function rig(opts: { delayWarningSec?: number } = {}) {
  const reports: { env: Envelope; data: Buffer }[] = [];
  const seen: Envelope[] = [];
  const deliver = async (env: Envelope, message: MessageSource, rcpts: EnvelopeRecipient[]): Promise<RecipientResult[]> => {
    if (env.dsnOf !== undefined) {
      reports.push({ env, data: await buffer(message.open()) });
      return rcpts.map((r) => ({ address: r.address, outcome: "delivered", detail: "250 2.0.0 Ok" }));
    }
    seen.push(structuredClone(env));
    return rcpts.map((r): RecipientResult => {
      if (r.address.startsWith("bad"))
        return { address: r.address, outcome: "failed", detail: "550 5.7.30 REQUIRETLS support required", remoteMta: "mx.remote.test" };
      if (r.address.startsWith("slow")) return { address: r.address, outcome: "deferred", detail: "451 4.7.10 no verified TLS yet" };
      return { address: r.address, outcome: "delivered", detail: "250 2.0.0 Ok" };
    });
  };
  const rig = await dsnRig({ t0: T0, body: BODY, deliver, ...opts });
  // The sender is vouched for (it authenticated), so a report may carry the whole message.
  const submit = (env: Parameters<typeof rig.submit>[0]) => rig.submit({ senderVouched: true, ...env });
  return { ...rig, submit, reports, seen };
}

test("the spool writes and reads both tags, and keeps them across envelope updates", async () => {
  const r = await rig();
  const id = await r.submit({ requireTls: true, recipients: [{ address: "slow@remote.test" }] });
  const stored = await r.spool.readEnvelope(id);
  assert.equal(stored.requireTls, true);
  assert.equal(stored.tlsRequiredNo, undefined);
  assert.equal(r.seen[0]!.requireTls, true, "delivery is handed the tag");
  assert.equal(stored.recipients[0]!.attempts, 1, "the envelope was updated after the attempt");
  const relaxed = await r.submit({ tlsRequiredNo: true, recipients: [{ address: "slow2@remote.test" }] });
  assert.equal((await r.spool.readEnvelope(relaxed)).tlsRequiredNo, true);
  // A fresh spool over the same directory (a restart) reads them the same.
  const again = new Spool(r.spool.dir, { fsync: false });
  await again.init();
  assert.equal((await again.readEnvelope(id)).requireTls, true);
  assert.equal((await again.readEnvelope(relaxed)).tlsRequiredNo, true);
  await r.runner.stop();
});

test("a bounce of a REQUIRETLS message goes from <>, tagged REQUIRETLS, header section only even with RET=FULL (§5)", async () => {
  const r = await rig();
  const id = await r.submit({ requireTls: true, ret: "FULL", recipients: [{ address: "bad@remote.test" }] });
  assert.equal(r.reports.length, 1);
  const report = r.reports[0]!;
  assert.equal(report.env.dsnOf, id);
  assert.equal(report.env.mailFrom, "");
  assert.equal(report.env.requireTls, true, "the report carries the tag (delivery sends it only where offered)");
  assert.equal(report.env.tlsRequiredNo, undefined);
  const dsn = await readDsn(report.data);
  assert.equal(dsn.recipients[0]!.get("status"), "5.7.30");
  assert.equal(dsn.recipients[0]!.get("diagnostic-code"), "smtp; 550 5.7.30 REQUIRETLS support required");
  assert.equal(dsn.returned.contentType, "text/rfc822-headers", "RET=FULL disregarded");
  const returned = dsn.returned.content.toString();
  assert.match(returned, /Subject: sealed numbers/);
  assert.doesNotMatch(returned, /secret body/);
  assert.equal(dsn.mail.headers.get("tls-required"), undefined);
  await r.runner.stop();
});

test("without REQUIRETLS the same RET=FULL bounce returns the whole message, untagged", async () => {
  const r = await rig();
  await r.submit({ ret: "FULL", recipients: [{ address: "bad@remote.test" }] });
  const report = r.reports[0]!;
  assert.equal(report.env.requireTls, undefined);
  assert.equal(report.env.tlsRequiredNo, undefined);
  assert.equal((await readDsn(report.data)).returned.contentType, "message/rfc822");
  await r.runner.stop();
});

test("a delay warning about a REQUIRETLS message is tagged the same way, header section only", async () => {
  const r = await rig({ delayWarningSec: 3600 });
  await r.submit({ requireTls: true, recipients: [{ address: "slow@remote.test" }] });
  for (let i = 0; i < 3 && r.reports.length === 0; i++) {
    r.advance(4000 * 1000);
    await r.runner.flush();
  }
  assert.equal(r.reports.length, 1);
  assert.equal(r.reports[0]!.env.requireTls, true);
  assert.equal((await readDsn(r.reports[0]!.data)).returned.contentType, "text/rfc822-headers");
  assert.match((await readDsn(r.reports[0]!.data)).mail.subject ?? "", /Delayed/);
  await r.runner.stop();
});

test('a bounce of a "TLS-Required: No" message asks the same: tagged, and the field on top (§6, §4.3)', async () => {
  const r = await rig();
  await r.submit({ tlsRequiredNo: true, recipients: [{ address: "bad@remote.test" }] });
  const report = r.reports[0]!;
  assert.equal(report.env.tlsRequiredNo, true);
  assert.equal(report.env.requireTls, undefined);
  const dsn = await readDsn(report.data);
  assert.equal(dsn.mail.headers.get("tls-required"), "No");
  await r.runner.stop();
});
