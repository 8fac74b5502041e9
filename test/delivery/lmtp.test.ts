/**
 * LMTP (RFC 2033) against a real Dovecot: per-recipient replies at RCPT and after DATA, over a
 * unix socket and over TCP, and through the transport table.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deliverLmtp } from "../../src/delivery/lmtp.js";
import { createDeliverer } from "../../src/delivery/router.js";
import { TransportTable } from "../../src/delivery/transport.js";
import { fileMessage } from "../../src/queue/message-file.js";
import type { Envelope, EnvelopeRecipient } from "../../src/queue/types.js";
import { startDovecot, type Dovecot } from "./helpers/dovecot.js";

let dovecot: Dovecot;
let messagePath: string;

before(async () => {
  dovecot = await startDovecot(["john@example.org", "mary@example.org", "full@example.org"]);
  const dir = await mkdtemp(join(tmpdir(), "postern-lmtp-"));
  messagePath = join(dir, "message");
  await writeFile(messagePath, "Subject: via LMTP\r\n\r\n.leading dot\r\nbody\r\n");
});
after(() => dovecot.stop());

function envelope(to: string[]): Envelope {
  return {
    id: "0000000000lmtp0000",
    receivedAt: new Date().toISOString(),
    mailFrom: "sender@example.net",
    size: 40,
    client: { ip: "127.0.0.1", helo: "c.test", listener: "mta" },
    recipients: to.map((address): EnvelopeRecipient => ({ address, status: "pending", attempts: 0 })),
  };
}

async function inbox(user: string): Promise<string[]> {
  const dir = join(dovecot.maildir(user, "example.org"), "new");
  const names = await readdir(dir).catch(() => []);
  return Promise.all(names.map((n) => readFile(join(dir, n), "utf8")));
}

test("over a unix socket: one reply per recipient — at RCPT (unknown) and after DATA (over quota)", async () => {
  const env = envelope(["john@example.org", "nobody@example.org", "full@example.org", "mary@example.org"]);
  const results = await deliverLmtp({ path: dovecot.socket }, env, fileMessage(messagePath), env.recipients, { heloName: "postern.test", timeoutMs: 10_000 });
  assert.deepEqual(
    results.map((r) => [r.address, r.outcome, r.detail.slice(0, 9)]),
    [
      ["john@example.org", "delivered", "250 2.0.0"],
      ["nobody@example.org", "failed", "550 5.1.1"],
      ["full@example.org", "failed", "552 5.2.2"],
      ["mary@example.org", "delivered", "250 2.0.0"],
    ],
    await dovecot.log(),
  );
  const [john] = await inbox("john");
  assert.match(john!, /^Return-Path: <sender@example\.net>\r?\n/);
  assert.match(john!, /\r?\n\.leading dot\r?\nbody\r?\n$/, "dot-stuffing undone by Dovecot: the body arrives intact");
  assert.equal((await inbox("mary")).length, 1);
  assert.equal((await inbox("full")).length, 0);
});

test("over TCP through the transport table (lmtp host:port), beside a discard route", async () => {
  const transport = new TransportTable({
    entries: TransportTable.parseEntries({ "example.org": `lmtp 127.0.0.1:${dovecot.port}` }),
    isLocalDomain: (d) => d === "example.org",
    hasSmarthost: false,
  });
  const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
  const deliver = createDeliverer({
    isLocalDomain: (d) => d === "example.org",
    maildirTemplate: "/nonexistent/{domain}/{localpart}",
    heloName: "postern.test",
    fsync: false,
    logger: quiet,
    transport,
  });
  const before = (await inbox("john")).length;
  const env = envelope(["john@example.org"]);
  const r = await deliver(env, fileMessage(messagePath), env.recipients);
  assert.equal(r[0]!.outcome, "delivered", r[0]!.detail);
  assert.equal((await inbox("john")).length, before + 1);
});

test("an LMTP server that is not there defers", async () => {
  const env = envelope(["john@example.org"]);
  const r = await deliverLmtp({ path: join(dovecot.dir, "no-such.sock") }, env, fileMessage(messagePath), env.recipients, { heloName: "postern.test" });
  assert.equal(r[0]!.outcome, "deferred");
  assert.match(r[0]!.detail, /ENOENT/);
});
