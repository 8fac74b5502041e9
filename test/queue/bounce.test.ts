/**
 * DSN bounces (RFC 3461/3464) through the real spool and queue runner: the report is injected
 * into the queue and delivered like any message; a standard parser (mailparser) reads it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { buffer } from "node:stream/consumers";
import type { Envelope, EnvelopeRecipient, MessageSource, RecipientResult } from "../../src/queue/types.js";
import { dsnRig } from "./helpers.js";
import { readDsn } from "./dsn-reader.js";

const T0 = Date.parse("2024-03-01T12:00:00Z");
const BODY = "From: Alice <alice@example.net>\r\nTo: x@remote.test\r\nSubject: quarterly numbers\r\nMessage-ID: <m1@example.net>\r\n\r\nThe body line.\r\n";

interface Delivered {
  env: Envelope;
  data: Buffer;
}

/** bad* → 550 5.1.1, slow* → 451 4.7.1, anything else → 250 (reports are captured with their bytes). */
async function rig(opts: { delayWarningSec?: number; dsnPassedOn?: boolean } = {}) {
  const reports: Delivered[] = [];
  const deliver = async (env: Envelope, message: MessageSource, rcpts: EnvelopeRecipient[]): Promise<RecipientResult[]> => {
    if (env.dsnOf !== undefined) reports.push({ env, data: await buffer(message.open()) });
    return rcpts.map((r): RecipientResult => {
      if (r.address.startsWith("bad"))
        return { address: r.address, outcome: "failed", detail: "550 5.1.1 <bad@remote.test>: no such user", remoteMta: "mx.remote.test" };
      if (r.address.startsWith("slow")) return { address: r.address, outcome: "deferred", detail: "451 4.7.1 greylisted, try later" };
      return { address: r.address, outcome: "delivered", detail: "250 2.0.0 Ok: queued", remoteMta: "mx.remote.test", dsnPassedOn: opts.dsnPassedOn };
    });
  };
  return { ...(await dsnRig({ t0: T0, body: BODY, deliver, delayWarningSec: opts.delayWarningSec })), reports };
}

test("a failed recipient gets one RFC 3464 report from <> to the sender, with ENVID, ORCPT, Remote-MTA and the SMTP diagnostic", async () => {
  const r = await rig();
  const id = await r.submit({
    envid: "QQ-314159",
    recipients: [
      { address: "bad@remote.test", orcpt: { addrType: "rfc822", address: "Bad.Original@remote.test" } },
      { address: "bad2@remote.test" },
      { address: "good@remote.test" },
    ],
  });
  assert.equal(r.reports.length, 1, "one report per message");
  const report = r.reports[0]!;
  assert.equal(report.env.mailFrom, "");
  assert.deepEqual(
    report.env.recipients.map((x) => x.address),
    ["alice@example.net"],
  );
  assert.equal(report.env.dsnOf, id);

  const dsn = await readDsn(report.data);
  assert.equal(dsn.perMessage.get("reporting-mta"), "dns; mail.example.org");
  assert.equal(dsn.perMessage.get("original-envelope-id"), "QQ-314159");
  assert.ok(dsn.perMessage.get("arrival-date"));
  assert.equal(dsn.recipients.length, 2, "the delivered recipient did not ask for a notice");
  const [first, second] = dsn.recipients;
  assert.equal(first!.get("final-recipient"), "rfc822; bad@remote.test");
  assert.equal(first!.get("original-recipient"), "rfc822; Bad.Original@remote.test");
  assert.equal(first!.get("action"), "failed");
  assert.equal(first!.get("status"), "5.1.1");
  assert.equal(first!.get("remote-mta"), "dns; mx.remote.test");
  assert.equal(first!.get("diagnostic-code"), "smtp; 550 5.1.1 <bad@remote.test>: no such user");
  assert.equal(second!.get("final-recipient"), "rfc822; bad2@remote.test");
  assert.equal(second!.has("original-recipient"), false, "Original-Recipient only from ORCPT");

  assert.equal(dsn.mail.from?.value[0]?.address, "MAILER-DAEMON@mail.example.org");
  assert.equal(dsn.mail.to && !Array.isArray(dsn.mail.to) ? dsn.mail.to.value[0]?.address : undefined, "alice@example.net");
  assert.equal(dsn.mail.headers.get("auto-submitted"), "auto-replied");
  assert.match(dsn.mail.text ?? "", /could not be delivered[\s\S]*bad@remote\.test/);
  // RET absent → HDRS: the header section only.
  assert.equal(dsn.returned.contentType, "text/rfc822-headers");
  const returned = dsn.returned.content.toString();
  assert.match(returned, /^From: Alice <alice@example.net>\r\n[\s\S]*Subject: quarterly numbers\r\n/);
  assert.doesNotMatch(returned, /The body line/);
  assert.deepEqual(await r.spool.list(), [], "original and report both done");
  await r.runner.stop();
});

test("RET=FULL returns the whole message as message/rfc822", async () => {
  const r = await rig();
  await r.submit({ ret: "FULL", recipients: [{ address: "bad@remote.test" }] });
  const dsn = await readDsn(r.reports[0]!.data);
  assert.equal(dsn.returned.contentType, "message/rfc822");
  const inner = dsn.returned.content.toString();
  assert.match(inner, /Subject: quarterly numbers\r\n/);
  assert.match(inner, /\r\n\r\nThe body line\.\r\n$/);
  await r.runner.stop();
});

test("a message from the null sender is never bounced, and the suppression is logged", async () => {
  const r = await rig();
  const id = await r.submit({ mailFrom: "", recipients: [{ address: "bad@remote.test" }] });
  assert.equal(r.reports.length, 0);
  assert.ok(r.logger.entries.some((e) => (e.obj as { event?: string; id?: string }).event === "dsn-suppressed" && (e.obj as { id?: string }).id === id));
  assert.deepEqual(await r.spool.list(), []);
  await r.runner.stop();
});

test("NOTIFY=NEVER: no report; NOTIFY=SUCCESS: a 'relayed' report for a peer without DSN, none when the peer took DSN over", async () => {
  const never = await rig();
  await never.submit({ recipients: [{ address: "bad@remote.test", notify: ["NEVER"] }] });
  assert.equal(never.reports.length, 0);
  await never.runner.stop();

  const success = await rig();
  await success.submit({
    recipients: [
      { address: "good@remote.test", notify: ["SUCCESS"] },
      { address: "me@example.org", notify: ["SUCCESS", "FAILURE"] },
    ],
  });
  assert.equal(success.reports.length, 1);
  const dsn = await readDsn(success.reports[0]!.data);
  assert.deepEqual(
    dsn.recipients.map((g) => [g.get("final-recipient"), g.get("action"), g.get("status")]),
    [
      ["rfc822; good@remote.test", "relayed", "2.0.0"], // RFC 3461 §6.2.2: handed to a non-DSN peer
      ["rfc822; me@example.org", "delivered", "2.0.0"], // final delivery here
    ],
  );
  assert.equal(dsn.mail.subject, "Successful Mail Delivery Report");
  await success.runner.stop();

  const passedOn = await rig({ dsnPassedOn: true });
  await passedOn.submit({ recipients: [{ address: "good@remote.test", notify: ["SUCCESS"] }] });
  assert.equal(passedOn.reports.length, 0, "the DSN-capable peer reports success itself");
  await passedOn.runner.stop();
});

test("a delay warning goes out once, after delayWarningSec, only for recipients that want DELAY", async () => {
  const r = await rig({ delayWarningSec: 3600 });
  const id = await r.submit({ recipients: [{ address: "slow@remote.test" }, { address: "slow2@remote.test", notify: ["FAILURE"] }] });
  assert.equal(r.reports.length, 0, "too early for a warning");
  for (let i = 0; i < 6; i++) {
    r.advance(4000 * 1000);
    await r.runner.flush();
  }
  assert.equal(r.reports.length, 1, "exactly one warning");
  const dsn = await readDsn(r.reports[0]!.data);
  assert.deepEqual(
    dsn.recipients.map((g) => [g.get("final-recipient"), g.get("action"), g.get("status")]),
    [["rfc822; slow@remote.test", "delayed", "4.7.1"]],
  );
  assert.ok(dsn.recipients[0]!.get("will-retry-until"));
  assert.match(dsn.mail.subject ?? "", /Delayed/);
  assert.equal((await r.spool.readEnvelope(id)).notices?.delay?.injected, true);
  await r.runner.stop();
});

test("onFinal run twice (as after a crash) produces one report; a report recorded but never committed is written again", async () => {
  const r = await rig();
  await r.runner.stop(); // drive the hook by hand
  const writer = await r.spool.openWriter();
  await writer.write(Buffer.from(BODY));
  const id = await writer.commit({
    mailFrom: "alice@example.net",
    client: { ip: "192.0.2.1", helo: "h.example", listener: "mta" },
    recipients: [{ address: "bad@remote.test" }],
  });
  const env = await r.spool.readEnvelope(id);
  env.recipients[0]!.status = "failed";
  env.recipients[0]!.lastResult = "550 5.1.1 no such user";
  await r.dsn.onFinal(env);
  await r.dsn.onFinal(await r.spool.readEnvelope(id));
  const reportIds = (await r.spool.list()).filter((x) => x !== id);
  assert.equal(reportIds.length, 1, "the second run found the report and added none");

  // The crash window before the commit: the id is recorded, the report is not in the spool.
  const crashed = await r.spool.readEnvelope(id);
  crashed.notices = { final: { id: "0000000000zzzzzzzzzz", injected: false } };
  await r.dsn.onFinal(crashed);
  const after = (await r.spool.readEnvelope(id)).notices?.final;
  assert.equal(after?.injected, true);
  assert.notEqual(after?.id, "0000000000zzzzzzzzzz");
  assert.equal((await r.spool.list()).filter((x) => x !== id).length, 2, "written again under a new id");
});

// docs/SECURITY.md 11.3: a port-25 stranger writes anyone's address in MAIL FROM; reports to it are backscatter.
const STRANGER = { ip: "203.0.113.9", helo: "bulk.example", listener: "mta" as const };

test("backscatter (11.3): a sender not vouched for gets no success report, and a failure report carries the headers only even with RET=FULL", async () => {
  const r = await rig();
  const id = await r.submit({
    mailFrom: "victim@remote.example",
    client: STRANGER,
    senderVouched: false,
    ret: "FULL",
    recipients: [{ address: "me@example.org", notify: ["SUCCESS"] }, { address: "bad@example.org" }],
  });
  assert.equal(r.reports.length, 1, "only the failure is reported");
  const dsn = await readDsn(r.reports[0]!.data);
  assert.deepEqual(
    dsn.recipients.map((g) => [g.get("final-recipient"), g.get("action")]),
    [["rfc822; bad@example.org", "failed"]],
  );
  assert.equal(dsn.returned.contentType, "text/rfc822-headers", "RET=FULL is not honoured for a stranger");
  assert.doesNotMatch(r.reports[0]!.data.toString(), /The body line/, "not a byte of the stranger's body goes to the third party");
  const suppressed = r.logger.entries.find(
    (e) => (e.obj as { event?: string; id?: string }).event === "dsn-suppressed" && (e.obj as { id?: string }).id === id,
  );
  assert.deepEqual((suppressed?.obj as { recipients?: string[] } | undefined)?.recipients, ["me@example.org"]);

  // Success only: nothing at all goes out.
  const before = r.reports.length;
  await r.submit({
    mailFrom: "victim@remote.example",
    client: STRANGER,
    senderVouched: false,
    ret: "FULL",
    recipients: [{ address: "me@example.org", notify: ["SUCCESS"] }],
  });
  assert.equal(r.reports.length, before);
  await r.runner.stop();
});

test("backscatter (11.3): no delay warning to a sender not vouched for, even with NOTIFY=DELAY", async () => {
  const r = await rig({ delayWarningSec: 3600 });
  await r.submit({
    mailFrom: "victim@remote.example",
    client: STRANGER,
    senderVouched: false,
    recipients: [{ address: "slow@example.org", notify: ["DELAY"] }],
  });
  for (let i = 0; i < 3; i++) {
    r.advance(4000 * 1000);
    await r.runner.flush();
  }
  assert.equal(r.reports.length, 0);
  await r.runner.stop();
});

test("backscatter (11.3): a sender vouched for at intake (mynetworks on port 25) gets success reports and RET=FULL; an old envelope without the record counts as vouched only when authenticated", async () => {
  const r = await rig();
  await r.submit({
    client: { ip: "192.0.2.10", helo: "app.example.org", listener: "mta" },
    senderVouched: true,
    ret: "FULL",
    recipients: [{ address: "me@example.org", notify: ["SUCCESS"] }, { address: "bad@example.org" }],
  });
  assert.equal(r.reports.length, 1);
  const dsn = await readDsn(r.reports[0]!.data);
  assert.deepEqual(
    dsn.recipients.map((g) => g.get("action")),
    ["delivered", "failed"],
  );
  assert.equal(dsn.returned.contentType, "message/rfc822");

  // Spooled before the record existed: the envelope's authUser decides.
  await r.submit({ recipients: [{ address: "me@example.org", notify: ["SUCCESS"] }] }); // authUser set by the rig
  assert.equal(r.reports.length, 2);
  await r.submit({ client: STRANGER, recipients: [{ address: "me@example.org", notify: ["SUCCESS"] }] });
  assert.equal(r.reports.length, 2, "no record and no authUser: not vouched for");
  await r.runner.stop();
});
