import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { once } from "node:events";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDeliverer, NO_ROUTE_DETAIL, type DelivererOptions } from "../../src/delivery/router.js";
import { QueueRunner } from "../../src/queue/scheduler.js";
import { Spool } from "../../src/queue/spool.js";
import { fileMessage } from "../../src/queue/message-file.js";
import type { Envelope, EnvelopeRecipient, MessageSource } from "../../src/queue/types.js";
import { startSink } from "./helpers/sink.js";
import { testCert } from "./helpers/tls-cert.js";
import type { Log } from "../../src/base/log.js";

const quiet: Log = { info: () => undefined, warn: () => undefined, error: () => undefined };

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), "postern-router-"));
}

function envelope(recipients: string[], extra: Partial<Envelope> = {}): Envelope {
  return {
    id: "0000000000aaaaaaaaaa",
    receivedAt: new Date().toISOString(),
    mailFrom: "sender@example.net",
    size: 0,
    client: { ip: "127.0.0.1", helo: "c.test", listener: "submission", authUser: "sender@example.net" },
    recipients: recipients.map((address): EnvelopeRecipient => ({ address, status: "pending", attempts: 0 })),
    ...extra,
  };
}

async function messageFile(dir: string, text: string): Promise<MessageSource> {
  const path = join(dir, "message");
  await writeFile(path, text);
  return fileMessage(path);
}

function baseOptions(root: string, extra: Partial<DelivererOptions> = {}): DelivererOptions {
  return {
    isLocalDomain: (d) => d === "local.test",
    maildirTemplate: join(root, "mail", "{domain}", "{localpart}", "Maildir"),
    heloName: "postern.test",
    fsync: true,
    logger: quiet,
    ...extra,
  };
}

test("local recipients go to their Maildir with Return-Path and Delivered-To; remote ones to the smarthost in one session", async () => {
  const root = await tempDir();
  const sink = await startSink({ size: 10_000_000, rcptReply: (a) => (a.startsWith("unknown") ? "550 5.1.1 No such user" : undefined) });
  try {
    const deliver = createDeliverer(baseOptions(root, { smarthost: { host: "127.0.0.1", port: sink.port, tls: "none" } }));
    const env = envelope(["Alice@LOCAL.test", "bob@far.test", "unknown@far.test", "carol@far.test"], { size: 15, body: "8BITMIME" });
    const results = await deliver(env, await messageFile(root, "Subject: hi\r\n\r\n"), env.recipients);

    assert.deepEqual(
      results.map((r) => [r.address, r.outcome, r.detail]),
      [
        ["Alice@LOCAL.test", "delivered", "250 2.0.0 delivered to maildir"],
        ["bob@far.test", "delivered", "250 2.0.0 Ok: queued"],
        ["unknown@far.test", "failed", "550 5.1.1 No such user"],
        ["carol@far.test", "delivered", "250 2.0.0 Ok: queued"],
      ],
    );
    const maildir = join(root, "mail", "local.test", "alice", "Maildir");
    const [file] = await readdir(join(maildir, "new"));
    assert.equal(
      await readFile(join(maildir, "new", file), "utf8"),
      "Return-Path: <sender@example.net>\r\nDelivered-To: Alice@LOCAL.test\r\nSubject: hi\r\n\r\n",
    );
    assert.equal(sink.messages.length, 1, "one session, one transaction for all remote recipients");
    assert.deepEqual(sink.messages[0].to, ["bob@far.test", "carol@far.test"]);
    assert.deepEqual(sink.messages[0].mailParams, ["SIZE=15", "BODY=8BITMIME"]);
    assert.equal(sink.messages[0].data.toString(), "Subject: hi\r\n\r\n", "no local trace headers on relayed mail");
  } finally {
    await sink.close();
  }
});

test("without a smarthost remote recipients are deferred with 'no route'", async () => {
  const root = await tempDir();
  const deliver = createDeliverer(baseOptions(root));
  const env = envelope(["x@far.test"]);
  assert.deepEqual(await deliver(env, await messageFile(root, "x"), env.recipients), [{ address: "x@far.test", outcome: "deferred", detail: NO_ROUTE_DETAIL }]);
});

test("smarthost down or refusing AUTH → deferred, never failed", async () => {
  const root = await tempDir();
  const closed = createServer();
  closed.listen(0, "127.0.0.1");
  await once(closed, "listening");
  const port = (closed.address() as { port: number }).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const down = createDeliverer(baseOptions(root, { smarthost: { host: "127.0.0.1", port, tls: "none" } }));
  const env = envelope(["x@far.test"]);
  const [r] = await down(env, await messageFile(root, "x"), env.recipients);
  assert.equal(r.outcome, "deferred");
  assert.match(r.detail, /ECONNREFUSED/);

  const cert = await testCert();
  const sink = await startSink({ tls: cert, auth: { username: "relay", password: "right" }, requireAuth: true });
  try {
    const badAuth = createDeliverer(
      baseOptions(root, {
        smarthost: {
          host: "127.0.0.1",
          port: sink.port,
          tls: "starttls-required",
          servername: "localhost",
          ca: cert.cert,
          auth: { username: "relay", password: "wrong" },
        },
      }),
    );
    const [a] = await badAuth(env, fileMessage(join(root, "message")), env.recipients);
    assert.equal(a.outcome, "deferred");
    assert.match(a.detail, /535 5\.7\.8/);
  } finally {
    await sink.close();
  }
});

test("an unusable local part fails; a local I/O error defers", async () => {
  const root = await tempDir();
  const deliver = createDeliverer(baseOptions(root));
  const env = envelope(["../../etc@local.test", "ok@local.test"]);
  const results = await deliver(env, fileMessage(join(root, "does-not-exist")), env.recipients);
  assert.deepEqual(
    results.map((r) => r.outcome),
    ["failed", "deferred"],
  );
  assert.match(results[1].detail, /^451 4\.3\.0 /);
});

test("end to end: spool → queue runner → router → smarthost over STARTTLS with AUTH, and local Maildir", async () => {
  const root = await tempDir();
  const cert = await testCert();
  const sink = await startSink({ tls: cert, auth: { username: "relay", password: "pw" }, requireAuth: true, dsn: true });
  try {
    const spool = new Spool(join(root, "queue"));
    await spool.init();
    const deliver = createDeliverer(
      baseOptions(root, {
        smarthost: {
          host: "127.0.0.1",
          port: sink.port,
          tls: "starttls-required",
          servername: "localhost",
          ca: cert.cert,
          auth: { username: "relay", password: "pw" },
        },
      }),
    );
    const runner = new QueueRunner({ spool, deliver, concurrency: 2, logger: quiet });
    await runner.start();
    const writer = await spool.openWriter();
    await writer.write(Buffer.from("Subject: e2e\r\n\r\n.dot\r\n"));
    const id = await writer.commit({
      mailFrom: "sender@example.net",
      envid: "env-1",
      ret: "HDRS",
      client: { ip: "127.0.0.1", helo: "c.test", listener: "submission" },
      recipients: [{ address: "me@local.test" }, { address: "you@far.test", notify: ["FAILURE"] }],
    });
    runner.enqueued(id);
    await runner.runDue();
    await runner.stop();

    assert.deepEqual(await spool.list(), [], "delivered and removed");
    assert.equal(sink.messages.length, 1);
    const [m] = sink.messages;
    assert.equal(m.tls, true);
    assert.equal(m.authUser, "relay");
    assert.deepEqual(m.to, ["you@far.test"]);
    assert.deepEqual(m.rcptParams, [["NOTIFY=FAILURE"]]);
    assert.deepEqual(m.mailParams, ["RET=HDRS", "ENVID=env-1"], "no SIZE= to a server that does not offer SIZE");
    assert.equal(m.data.toString(), "Subject: e2e\r\n\r\n.dot\r\n");
    const newDir = join(root, "mail", "local.test", "me", "Maildir", "new");
    const [file] = await readdir(newDir);
    assert.match(await readFile(join(newDir, file), "utf8"), /^Return-Path: <sender@example.net>\r\nDelivered-To: me@local.test\r\nSubject: e2e/);
  } finally {
    await sink.close();
  }
});

test("a remote address that cannot go on a command line fails alone; the others are relayed", async () => {
  const root = await tempDir();
  const sink = await startSink();
  try {
    const deliver = createDeliverer(baseOptions(root, { smarthost: { host: "127.0.0.1", port: sink.port, tls: "none" } }));
    const env = envelope(["evil>@far.test", "fine@far.test"]);
    const results = await deliver(env, await messageFile(root, "x\r\n"), env.recipients);
    assert.deepEqual(
      results.map((r) => r.outcome),
      ["failed", "delivered"],
    );
    assert.deepEqual(sink.messages[0].to, ["fine@far.test"]);
  } finally {
    await sink.close();
  }
});
