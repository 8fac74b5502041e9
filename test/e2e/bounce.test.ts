/**
 * Bounces end to end: a smarthost refuses one recipient with 5xx; the real server injects an
 * RFC 3464 report into its own queue and delivers it to the sender's Maildir, where mailparser
 * reads it. A message from the null sender is never bounced.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { startPostern } from "./helpers/postern.js";
import { sendViaMta } from "./helpers/mta-send.js";
import { RawSmtp } from "./helpers/raw-smtp.js";
import { startSink } from "../delivery/helpers/sink.js";
import { readDsn } from "../queue/dsn-reader.js";

test("a 5xx from the smarthost comes back to the sender as a DSN in its Maildir; a null-sender message is not bounced", async () => {
  const sink = await startSink({ rcptReply: (a) => (a.startsWith("gone") ? "550 5.1.1 <gone@elsewhere.test>: Recipient address rejected" : undefined) });
  const server = await startPostern({
    users: [{ address: "john@example.org", password: "bounce-pass" }],
    config: { relay: { smarthost: `127.0.0.1:${sink.port}` }, mynetworks: ["127.0.0.1/32"] },
  });
  try {
    const id = await sendViaMta(server.ports.mta, {
      from: "john@example.org",
      to: ["gone@elsewhere.test", "here@elsewhere.test"],
      mailParams: "RET=FULL ENVID=trip+2Breport-7",
      rcptParams: "NOTIFY=FAILURE ORCPT=rfc822;Orig+2BAddr@elsewhere.test",
      data: "Subject: travel plans\r\nMessage-ID: <t1@example.org>\r\n\r\nsee you there\r\n",
    });
    const queued = await server.waitForLog((l) => l.event === "dsn-queued" && l.id === id);
    const stored = await server.waitForLog((l) => l.event === "maildir-stored" && l.id === queued.dsn);
    assert.deepEqual(
      sink.messages.map((m) => m.to),
      [["here@elsewhere.test"]],
    );

    const box = join(server.dir, "mail/example.org/john/new");
    const files = await readdir(box);
    assert.equal(files.length, 1);
    assert.ok(String(stored.file).endsWith(files[0]!));
    const raw = await readFile(join(box, files[0]!));
    assert.match(raw.toString(), /^Return-Path: <>\r\n/, "from the null sender");
    const dsn = await readDsn(raw);
    assert.equal(dsn.perMessage.get("original-envelope-id"), "trip+report-7");
    assert.equal(dsn.recipients.length, 1);
    const g = dsn.recipients[0]!;
    assert.equal(g.get("final-recipient"), "rfc822; gone@elsewhere.test");
    assert.equal(g.get("original-recipient"), "rfc822; Orig+Addr@elsewhere.test");
    assert.equal(g.get("action"), "failed");
    assert.equal(g.get("status"), "5.1.1");
    assert.match(g.get("diagnostic-code") ?? "", /^smtp; 550 5\.1\.1 <gone@elsewhere\.test>: Recipient address rejected$/);
    assert.equal(dsn.returned.contentType, "message/rfc822");
    assert.match(dsn.returned.content.toString(), /\r\n\r\nsee you there\r\n/);

    const nullId = await sendViaMta(server.ports.mta, {
      from: "",
      to: ["gone@elsewhere.test"],
      data: "Subject: a report of some kind\r\n\r\nx\r\n",
    });
    await server.waitForLog((l) => l.event === "dsn-suppressed" && l.id === nullId);
    await server.waitForLog((l) => l.event === "removed" && l.id === nullId);
    assert.equal(server.logs.filter((l) => l.event === "dsn-queued").length, 1, "no report about the null-sender message");
    assert.equal((await readdir(box)).length, 1);
  } finally {
    await server.cleanup();
    await sink.close();
  }
});

// docs/SECURITY.md 11.3. No mynetworks: the port-25 client is a stranger whose MAIL FROM may be anyone's.
const SPAM = "From: <victim@remote.example>\r\nSubject: cheap pills\r\nMessage-ID: <spam1@bulk.example>\r\n\r\nBUY CHEAP PILLS at http://spam.example/\r\n";

test("backscatter (11.3): a port-25 stranger's NOTIFY=SUCCESS RET=FULL sends no report to the forged sender; an authenticated submission's NOTIFY=SUCCESS does", async () => {
  const sink = await startSink({});
  const server = await startPostern({
    users: [{ address: "john@example.org", password: "dsn-pass-11-3" }],
    config: { relay: { smarthost: `127.0.0.1:${sink.port}` } },
  });
  try {
    const spamId = await sendViaMta(server.ports.mta, {
      from: "victim@remote.example",
      to: ["john@example.org"],
      mailParams: "RET=FULL ENVID=spam-1",
      rcptParams: "NOTIFY=SUCCESS",
      data: SPAM,
    });
    // "removed" comes after the final report hook: by then a report would have been queued.
    await server.waitForLog((l) => l.event === "removed" && l.id === spamId);
    assert.equal(server.logs.filter((l) => l.event === "dsn-queued" && l.id === spamId).length, 0, "no delivery report for the stranger");
    const suppressed = await server.waitForLog((l) => l.event === "dsn-suppressed" && l.id === spamId);
    assert.deepEqual(suppressed.recipients, ["john@example.org"]);
    assert.equal((await readdir(join(server.dir, "mail/example.org/john/new"))).length, 1, "the message itself is delivered");

    // The same request from an authenticated submission is honoured.
    const submission = nodemailer.createTransport({
      host: "127.0.0.1",
      port: server.ports.submission,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: "john@example.org", pass: "dsn-pass-11-3" },
    });
    const info = await submission.sendMail({
      envelope: { from: "john@example.org", to: ["john@example.org"] },
      dsn: { notify: "SUCCESS", ret: "FULL", id: "mine-1" },
      raw: "From: john@example.org\r\nTo: john@example.org\r\nSubject: did it arrive?\r\n\r\nplease confirm\r\n",
    });
    submission.close();
    const id = /queued as (\S+)/.exec(info.response)?.[1];
    const queued = await server.waitForLog((l) => l.event === "dsn-queued" && l.id === id);
    const stored = await server.waitForLog((l) => l.event === "maildir-stored" && l.id === queued.dsn);
    const dsn = await readDsn(await readFile(join(server.dir, "mail/example.org/john/new", String(stored.file).split("/").pop()!)));
    assert.equal(dsn.recipients[0]!.get("action"), "delivered");
    assert.equal(dsn.returned.contentType, "message/rfc822", "RET=FULL honoured for the authenticated sender");
    assert.equal(sink.messages.length, 0, "nothing went out to remote.example");
  } finally {
    await server.cleanup();
    await sink.close();
  }
});

test("backscatter (11.3): what the transport table refuses is refused at RCPT; a stranger's message that fails after acceptance (alias forwarding refused) bounces with the headers only, RET=FULL or not", async () => {
  const sink = await startSink({ rcptReply: (a) => (a.startsWith("gone") ? "550 5.1.1 <gone@elsewhere.test>: no such user" : undefined) });
  const aliasDir = await mkdtemp(join(tmpdir(), "postern-aliases-"));
  const aliasesFile = join(aliasDir, "aliases");
  await writeFile(aliasesFile, "fwd@example.org: gone@elsewhere.test\n@old.example.org: fwd@example.org\n");
  const server = await startPostern({
    config: {
      domains: ["example.org", "old.example.org"],
      relay: { smarthost: `127.0.0.1:${sink.port}` },
      aliases: { file: aliasesFile },
      transport: { "old.example.org": "reject" },
    },
  });
  try {
    // What the transport table would refuse at delivery is refused at RCPT: no bounce at all.
    const c = await RawSmtp.open(server.ports.mta);
    try {
      await c.reply();
      await c.expect("EHLO bulk.example", 250);
      await c.expect("MAIL FROM:<victim@remote.example>", 250);
      const r = await c.cmd("RCPT TO:<anyone@old.example.org>");
      assert.match(r.text, /^550 5\.7\.1 /, "refused at RCPT, not accepted and bounced");
    } finally {
      c.close();
    }

    const id = await sendViaMta(server.ports.mta, { from: "victim@remote.example", to: ["fwd@example.org"], mailParams: "RET=FULL", data: SPAM });
    const queued = await server.waitForLog((l) => l.event === "dsn-queued" && l.id === id);
    await server.waitForLog((l) => l.event === "removed" && l.id === queued.dsn);
    const report = sink.messages.find((m) => m.from === "" && m.to.includes("victim@remote.example"));
    assert.ok(report, "RFC 5321 §6.1: a failure after acceptance is still reported");
    const dsn = await readDsn(report.data);
    assert.equal(dsn.recipients[0]!.get("action"), "failed");
    assert.equal(dsn.returned.contentType, "text/rfc822-headers");
    assert.match(dsn.returned.content.toString(), /Subject: cheap pills/);
    assert.doesNotMatch(report.data.toString(), /BUY CHEAP PILLS/, "the stranger's body is not relayed to the forged sender");
  } finally {
    await server.cleanup();
    await sink.close();
    await rm(aliasDir, { recursive: true, force: true });
  }
});
