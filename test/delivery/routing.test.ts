/**
 * Routing end to end at the deliverer: a real DNS server on 127.0.0.1, real SMTP sinks (one
 * refusing 4xx first, one 5xx, one requiring STARTTLS, one requiring AUTH), the transport table,
 * aliases, session reuse and concurrency limits.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AliasResolver } from "../../src/delivery/aliases.js";
import { MxResolver } from "../../src/delivery/mx.js";
import { createDeliverer, type DelivererOptions } from "../../src/delivery/router.js";
import { SmtpPool } from "../../src/delivery/smtp-pool.js";
import { TransportTable } from "../../src/delivery/transport.js";
import { fileMessage } from "../../src/queue/message-file.js";
import type { Envelope, EnvelopeRecipient, MessageSource } from "../../src/queue/types.js";
import { startDnsServer, type DnsServer } from "./helpers/dns-server.js";
import { startSink, type Sink } from "./helpers/sink.js";
import { testCert } from "./helpers/tls-cert.js";
import type { Log } from "../../src/base/log.js";

const logs: { event?: string }[] = [];
const logger: Log = { info: (o) => void logs.push(o), warn: (o) => void logs.push(o), error: (o) => void logs.push(o) };
let dns: DnsServer;
let root: string;

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, "127.0.0.1", () => ok()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((ok) => s.close(() => ok()));
  return port;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), "postern-routing-"));
  const a = { A: ["127.0.0.1"] };
  dns = await startDnsServer({
    "far.test": {
      MX: [
        { preference: 10, exchange: "mx1.far.test" },
        { preference: 20, exchange: "mx2.far.test" },
      ],
    },
    "mx1.far.test": a,
    "mx2.far.test": a,
    "plain.test": a, // no MX: implicit MX
    "nomail.test": { MX: [{ preference: 0, exchange: "" }] },
    "secure.test": { MX: [{ preference: 10, exchange: "mx.secure.test" }] },
    "mx.secure.test": a,
  });
});
after(() => dns.close());

function envelope(to: string[], extra: Partial<Envelope> = {}): Envelope {
  return {
    id: "0000000000routing0",
    receivedAt: new Date().toISOString(),
    mailFrom: "sender@example.org",
    size: 40,
    client: { ip: "127.0.0.1", helo: "c.test", listener: "submission", authUser: "sender@example.org" },
    recipients: to.map((address): EnvelopeRecipient => ({ address, status: "pending", attempts: 0 })),
    ...extra,
  };
}

let n = 0;
async function message(text = "Subject: routed\r\n\r\nhello\r\n"): Promise<MessageSource> {
  const path = join(root, `msg-${n++}`);
  await writeFile(path, text);
  return fileMessage(path);
}

function deliverer(extra: Partial<DelivererOptions>) {
  return createDeliverer({
    isLocalDomain: (d) => d === "example.org",
    maildirTemplate: join(root, "mail", "{domain}", "{localpart}"),
    heloName: "mail.postern.test",
    fsync: false,
    logger,
    mx: new MxResolver({ servers: [dns.address], timeoutMs: 2000, ownNames: ["mail.postern.test"], ownAddresses: [] }),
    timeoutMs: 5000,
    ...extra,
  });
}

async function withSinks<T>(sinks: Sink[], fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } finally {
    await Promise.all(sinks.map((s) => s.close()));
  }
}

test("MX by preference: the primary gets the mail; when it is down the backup does", async () => {
  const primary = await startSink();
  const backup = await startSink();
  await withSinks([primary, backup], async () => {
    const deliver = deliverer({ mxHostPorts: { "mx1.far.test": primary.port, "mx2.far.test": backup.port } });
    const env = envelope(["a@far.test", "b@far.test"]);
    const r = await deliver(env, await message(), env.recipients);
    assert.deepEqual(
      r.map((x) => x.outcome),
      ["delivered", "delivered"],
    );
    assert.equal(primary.messages.length, 1, "one transaction for both recipients of the destination");
    assert.deepEqual(primary.messages[0]!.to, ["a@far.test", "b@far.test"]);
    assert.equal(backup.messages.length, 0);

    const down = await closedPort();
    const deliver2 = deliverer({ mxHostPorts: { "mx1.far.test": down, "mx2.far.test": backup.port } });
    const r2 = await deliver2(env, await message(), env.recipients);
    assert.deepEqual(
      r2.map((x) => [x.outcome, x.remoteMta]),
      [
        ["delivered", "mx2.far.test"],
        ["delivered", "mx2.far.test"],
      ],
    );
    assert.equal(backup.messages.length, 1);
    assert.ok(logs.some((l) => l.event === "mx-host-failed"));
  });
});

test("no MX: the domain's A record; null MX: failed 5.1.10 without any connection", async () => {
  const sink = await startSink();
  await withSinks([sink], async () => {
    const deliver = deliverer({ mxPort: sink.port });
    const env = envelope(["x@plain.test", "y@nomail.test"]);
    const r = await deliver(env, await message(), env.recipients);
    assert.equal(r[0]!.outcome, "delivered");
    assert.equal(r[1]!.outcome, "failed");
    assert.match(r[1]!.detail, /^556 5\.1\.10 /);
    assert.deepEqual(
      sink.messages.map((m) => m.to),
      [["x@plain.test"]],
    );
  });
});

test("deferral then success: a 451 at RCPT defers; the next attempt is delivered. A 550 fails.", async () => {
  let refusals = 0;
  const sink = await startSink({
    rcptReply: (a) => (a.startsWith("gone") ? "550 5.1.1 no such user" : refusals++ === 0 ? "451 4.3.0 try later" : undefined),
  });
  await withSinks([sink], async () => {
    const deliver = deliverer({ mxPort: sink.port });
    const env = envelope(["later@plain.test", "gone@plain.test"]);
    const path = await message();
    const first = await deliver(env, path, env.recipients);
    assert.deepEqual(
      first.map((x) => [x.outcome, x.detail]),
      [
        ["deferred", "451 4.3.0 try later"],
        ["failed", "550 5.1.1 no such user"],
      ],
    );
    const second = await deliver(env, path, [env.recipients[0]!]);
    assert.deepEqual(
      second.map((x) => x.outcome),
      ["delivered"],
    );
    assert.equal(sink.messages.length, 1);
  });
});

test("tls=must: a peer without STARTTLS defers; one with it gets the mail encrypted; verify=yes checks the certificate", async () => {
  const cert = await testCert();
  const clear = await startSink();
  const tls = await startSink({ tls: cert, requireTls: true });
  await withSinks([clear, tls], async () => {
    const transport = new TransportTable({
      entries: TransportTable.parseEntries({ "secure.test": "mx tls=must", ".secure.test": "mx tls=must verify=yes" }),
      isLocalDomain: () => false,
      hasSmarthost: false,
    });
    const env = envelope(["s@secure.test"]);
    const noTls = await deliverer({ transport, mxPort: clear.port })(env, await message(), env.recipients);
    assert.equal(noTls[0]!.outcome, "deferred");
    assert.match(noTls[0]!.detail, /STARTTLS required but not offered/);
    assert.equal(clear.messages.length, 0, "never sent in clear");

    const ok = await deliverer({ transport, mxPort: tls.port })(env, await message(), env.recipients);
    assert.equal(ok[0]!.outcome, "delivered");
    assert.equal(tls.messages[0]!.tls, true);

    // The sink's certificate is self-signed for "localhost", not for mx.secure.test.
    const sub = envelope(["s@mx.secure.test"]);
    dns.zone["mx.secure.test"]!.MX = [{ preference: 1, exchange: "mx.secure.test" }];
    const refused = await deliverer({ transport, mxPort: tls.port, ca: cert.cert })(sub, await message(), sub.recipients);
    assert.equal(refused[0]!.outcome, "deferred");
    assert.match(refused[0]!.detail, /mx\.secure\.test|certificate|altnames/i);
    assert.equal(tls.messages.length, 1);
  });
});

test("smarthost per domain with AUTH over STARTTLS; a 5xx smarthost fails the recipient", async () => {
  const cert = await testCert();
  const auth = await startSink({ tls: cert, auth: { username: "relay-user", password: "relay-pass" }, requireAuth: true });
  const hard = await startSink({ rcptReply: () => "554 5.7.1 relaying refused" });
  await withSinks([auth, hard], async () => {
    const transport = new TransportTable({
      entries: TransportTable.parseEntries({ "viaauth.test": "smarthost", "viahard.test": `smarthost 127.0.0.1:${hard.port} tls=none` }),
      isLocalDomain: () => false,
      hasSmarthost: true,
    });
    const deliver = deliverer({
      transport,
      smarthost: {
        host: "127.0.0.1",
        port: auth.port,
        tls: "starttls-required",
        rejectUnauthorized: false,
        auth: { username: "relay-user", password: "relay-pass" },
      },
    });
    const env = envelope(["x@viaauth.test", "y@viahard.test"]);
    const r = await deliver(env, await message(), env.recipients);
    assert.deepEqual(
      r.map((x) => x.outcome),
      ["delivered", "failed"],
    );
    assert.equal(auth.messages[0]!.authUser, "relay-user");
    assert.equal(auth.messages[0]!.tls, true);
    assert.match(r[1]!.detail, /^554 5\.7\.1/);
  });
});

test("8BITMIME/SMTPUTF8 awareness: 8-bit content to a 7-bit peer fails 5.6.3, SMTPUTF8 fails 5.6.7; 7-bit content passes", async () => {
  const sink = await startSink({ eightBitMime: false });
  await withSinks([sink], async () => {
    const deliver = deliverer({ mxPort: sink.port });
    const env8 = envelope(["a@plain.test"], { body: "8BITMIME" });
    const eight = await deliver(env8, await message("Subject: caf\xc3\xa9\r\n\r\n\xc3\xa9\r\n"), env8.recipients);
    assert.deepEqual([eight[0]!.outcome, eight[0]!.detail.slice(0, 9)], ["failed", "554 5.6.3"]);
    const seven = await deliver(env8, await message(), env8.recipients);
    assert.equal(seven[0]!.outcome, "delivered", "declared 8BITMIME but 7-bit content: no harm in sending");
    const envU = envelope(["a@plain.test"], { smtputf8: true });
    const utf = await deliver(envU, await message(), envU.recipients);
    assert.deepEqual([utf[0]!.outcome, utf[0]!.detail.slice(0, 9)], ["failed", "553 5.6.7"]);
    assert.equal(sink.messages.length, 1);
  });
});

test("DSN parameters are passed on to a peer that offers DSN", async () => {
  const sink = await startSink({ dsn: true });
  await withSinks([sink], async () => {
    const env = envelope(["a@plain.test"], { ret: "HDRS", envid: "env-1" });
    env.recipients[0]!.notify = ["FAILURE", "DELAY"];
    env.recipients[0]!.orcpt = { addrType: "rfc822", address: "a@plain.test" };
    const r = await deliverer({ mxPort: sink.port })(env, await message(), env.recipients);
    assert.equal(r[0]!.dsnPassedOn, true);
    assert.deepEqual(
      sink.messages[0]!.mailParams.filter((p) => /^(RET|ENVID)=/.test(p)),
      ["RET=HDRS", "ENVID=env-1"],
    );
    assert.deepEqual(sink.messages[0]!.rcptParams[0], ["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;a@plain.test"]);
  });
});

test("sessions are reused across messages (one EHLO; RSET only after idling) and limited per destination and in total", async () => {
  const sink = await startSink();
  await withSinks([sink], async () => {
    const probing = new SmtpPool({ maxTotal: 3, maxPerDestination: 2, idleTimeoutMs: 2000, maxMessagesPerSession: 100, probeAfterIdleMs: 0 });
    const deliverProbing = deliverer({ mxPort: sink.port, pool: probing });
    for (let i = 0; i < 3; i++) {
      const env = envelope([`r${i}@plain.test`]);
      assert.equal((await deliverProbing(env, await message(), env.recipients))[0]!.outcome, "delivered");
    }
    assert.equal(sink.commands.filter((c) => c.startsWith("EHLO")).length, 1, "one session for three messages");
    assert.equal(sink.commands.filter((c) => c === "RSET").length, 2, "each reuse after idling starts with RSET");
    await probing.close();

    const pool = new SmtpPool({ maxTotal: 3, maxPerDestination: 2, idleTimeoutMs: 2000, maxMessagesPerSession: 100 });
    const deliver = deliverer({ mxPort: sink.port, pool });
    for (let i = 0; i < 2; i++) {
      const env = envelope([`q${i}@plain.test`]);
      assert.equal((await deliver(env, await message(), env.recipients))[0]!.outcome, "delivered");
    }
    assert.equal(sink.commands.filter((c) => c.startsWith("EHLO")).length, 2, "a second session, reused at once");
    assert.equal(sink.commands.filter((c) => c === "RSET").length, 2, "no RSET for a session idle only briefly");

    const many = Array.from({ length: 8 }, (_, i) => envelope([`p${i}@plain.test`]));
    const results = await Promise.all(many.map(async (env) => deliver(env, await message(), env.recipients)));
    assert.ok(results.every((r) => r[0]!.outcome === "delivered"));
    assert.equal(pool.peak.byDestination.get("plain.test"), 2, "never more than 2 sessions to one destination");
    assert.ok(pool.peak.total <= 3);
    assert.equal(sink.messages.length, 13);
    await pool.close();
  });
});

test("a pooled session the peer closes as it is reused: the message goes on a new session, not deferred", async () => {
  let mails = 0;
  // The second MAIL (the first on the reused session) finds the peer gone, as after its idle timeout.
  const sink = await startSink({ mailReply: () => (++mails === 2 ? "DROP" : undefined) });
  await withSinks([sink], async () => {
    const pool = new SmtpPool({ maxTotal: 3, maxPerDestination: 2, idleTimeoutMs: 2000, maxMessagesPerSession: 100 });
    const deliver = deliverer({ mxPort: sink.port, pool });
    for (const rcpt of ["s0@plain.test", "s1@plain.test"]) {
      const env = envelope([rcpt]);
      const r = await deliver(env, await message(), env.recipients);
      assert.equal(r[0]!.outcome, "delivered", r[0]!.detail);
    }
    assert.equal(sink.messages.length, 2);
    assert.equal(sink.commands.filter((c) => c.startsWith("EHLO")).length, 2, "the message went again on a second session");
    await pool.close();
  });
});

test("aliases at delivery: a local alias lands in a Maildir and forwards to a remote address via MX", async () => {
  const sink = await startSink();
  await withSinks([sink], async () => {
    const aliasFile = join(root, "aliases");
    await writeFile(aliasFile, "team@example.org: john, friend@plain.test\n@example.org: john\n");
    const users = new Set(["john@example.org"]);
    const aliases = new AliasResolver({
      file: aliasFile,
      delimiter: "+",
      isLocalDomain: (d) => d === "example.org",
      mailbox: async (a) => (users.has(a.toLowerCase()) ? a.toLowerCase() : null),
    });
    const deliver = deliverer({ mxPort: sink.port, aliases });
    const env = envelope(["team@example.org", "john+news@example.org", "whoever@example.org"]);
    const r = await deliver(env, await message(), env.recipients);
    assert.deepEqual(
      r.map((x) => [x.address, x.outcome]),
      [
        ["team@example.org", "delivered"],
        ["john+news@example.org", "delivered"],
        ["whoever@example.org", "delivered"],
      ],
    );
    assert.deepEqual(
      sink.messages.map((m) => [m.from, m.to]),
      [["sender@example.org", ["friend@plain.test"]]],
    );
    const files = await readdir(join(root, "mail", "example.org", "john", "new"));
    assert.equal(files.length, 1, "three recipients lead to john: his mailbox gets the message once");
  });
});

test("transport discard and reject", async () => {
  const transport = new TransportTable({
    entries: TransportTable.parseEntries({ "void.test": "discard", "nope.test": "reject" }),
    isLocalDomain: () => false,
    hasSmarthost: false,
  });
  const env = envelope(["a@void.test", "b@nope.test"]);
  const r = await deliverer({ transport })(env, await message(), env.recipients);
  assert.deepEqual(
    r.map((x) => [x.outcome, x.detail.slice(0, 9)]),
    [
      ["delivered", "250 2.0.0"],
      ["failed", "554 5.7.1"],
    ],
  );
});
