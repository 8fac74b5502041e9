/**
 * Bounces end to end: a smarthost refuses one recipient with 5xx; the real server injects an
 * RFC 3464 report into its own queue and delivers it to the sender's Maildir, where mailparser
 * reads it. A message from the null sender is never bounced.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { startPostern } from "./helpers/postern.js";
import { sendViaMta } from "./helpers/mta-send.js";
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
    assert.deepEqual(sink.messages.map((m) => m.to), [["here@elsewhere.test"]]);

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
