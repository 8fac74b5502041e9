/**
 * REQUIRETLS end to end through the real `postern serve` (RFC 8689): a login submits on 465 with
 * MAIL FROM:<…> REQUIRETLS and RET=FULL to a remote recipient whose relay has a verified
 * certificate but does not offer REQUIRETLS. The message must not reach the relay; it comes back
 * as a report (5.7.30, §4.2.1)
 * with the header section only (§5), delivered to the sender's Maildir. The same message without
 * REQUIRETLS goes to the relay: the bounce is REQUIRETLS's doing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPostern, type Postern } from "../e2e/helpers/postern.js";
import { RawSmtp, b64 } from "../e2e/helpers/raw-smtp.js";
import { startSink } from "../delivery/helpers/sink.js";
import { readDsn } from "../queue/dsn-reader.js";
import { makeTestCa } from "../helpers/test-ca.js";

const MESSAGE = "Subject: sealed plans\r\nTLS-Required: No\r\n\r\nthe secret body\r\n.\r\n";

/** One message over implicit TLS as john; returns its queue id. */
async function submit(server: Postern, mailParams: string): Promise<string> {
  const c = await RawSmtp.open(server.ports.submissions, { tls: true });
  try {
    assert.equal((await c.reply()).code, 220);
    const ehlo = await c.cmd("EHLO client.test");
    assert.equal(ehlo.code, 250);
    assert.ok(
      ehlo.lines.some((l) => /^250[- ]REQUIRETLS$/.test(l)),
      "REQUIRETLS offered on 465",
    );
    assert.equal((await c.cmd(`AUTH PLAIN ${b64("\0john@example.org\0sealed-pass")}`)).code, 235);
    assert.equal((await c.cmd(`MAIL FROM:<john@example.org> ${mailParams}`.trim())).code, 250);
    assert.equal((await c.cmd("RCPT TO:<far@elsewhere.test>")).code, 250);
    assert.equal((await c.cmd("DATA")).code, 354);
    c.write(MESSAGE);
    const done = await c.reply();
    const id = /^250 2\.0\.0 Ok: queued as (\S+)/.exec(done.text)?.[1];
    assert.ok(id, done.text);
    await c.cmd("QUIT");
    return id;
  } finally {
    c.close();
  }
}

test("a REQUIRETLS message for a verified relay without REQUIRETLS bounces with 5.7.30, header section only; without REQUIRETLS it is relayed", async () => {
  const ca = await makeTestCa(await mkdtemp(join(tmpdir(), "postern-requiretls-")));
  const leaf = await ca.issue({ names: ["relay.test"] });
  const sink = await startSink({ tls: { key: leaf.keyPem, cert: leaf.certPem } });
  const server = await startPostern({
    users: [{ address: "john@example.org", password: "sealed-pass" }],
    config: {
      relay: { smarthost: { host: "127.0.0.1", port: sink.port, tls: "starttls-required", verify: true, servername: "relay.test", caFile: ca.certFile } },
    },
  });
  try {
    const id = await submit(server, "REQUIRETLS RET=FULL");
    await server.waitForLog((l) => l.event === "queued" && l.id === id && l.requireTls === true);
    const failed = await server.waitForLog((l) => l.event === "failed" && l.id === id, 20_000);
    assert.match(String(failed.detail), /5\.7\.30/);
    const queued = await server.waitForLog((l) => l.event === "dsn-queued" && l.id === id);
    const stored = await server.waitForLog((l) => l.event === "maildir-stored" && l.id === queued.dsn, 20_000);
    assert.equal(sink.messages.length, 0, "nothing reached the relay");

    const dsn = await readDsn(await readFile(join(server.dir, "mail/example.org/john/new", String(stored.file))));
    const g = dsn.recipients[0]!;
    assert.equal(g.get("final-recipient"), "rfc822; far@elsewhere.test");
    assert.equal(g.get("action"), "failed");
    assert.equal(g.get("status"), "5.7.30");
    assert.equal(dsn.returned.contentType, "text/rfc822-headers", "RET=FULL disregarded (RFC 8689 §5)");
    assert.match(dsn.returned.content.toString(), /Subject: sealed plans/);
    assert.doesNotMatch(dsn.returned.content.toString(), /secret body/);

    const plain = await submit(server, "");
    await server.waitForLog((l) => l.event === "delivered" && l.id === plain, 20_000);
    assert.equal(sink.messages.length, 1);
    assert.deepEqual(sink.messages[0]!.to, ["far@elsewhere.test"]);
    assert.equal(sink.messages[0]!.tls, true);
  } finally {
    await server.stop();
    await sink.close();
  }
});
