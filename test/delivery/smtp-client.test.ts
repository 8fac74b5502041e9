import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type Socket } from "node:net";
import { Readable } from "node:stream";
import { SmtpClient, type SmtpClientError, type SmtpConnectOptions } from "../../src/delivery/smtp-client.js";
import { SmtpPool } from "../../src/delivery/smtp-pool.js";
import { startSink, type Sink, type SinkOptions } from "./helpers/sink.js";
import { testCert } from "./helpers/tls-cert.js";

const b = (s: string) => Buffer.from(s, "latin1");

async function withSink(opts: SinkOptions, fn: (sink: Sink) => Promise<void>): Promise<void> {
  const sink = await startSink(opts);
  try {
    await fn(sink);
  } finally {
    await sink.close();
  }
}

function connectTo(sink: Sink, extra: Partial<SmtpConnectOptions> = {}): Promise<SmtpClient> {
  return SmtpClient.connect({ host: "127.0.0.1", port: sink.port, tls: "none", heloName: "client.test", timeoutMs: 5000, ...extra });
}

/** A raw TCP server that plays a script, for misbehaving peers the sink will not imitate. */
async function rawServer(onConnection: (socket: Socket) => void) {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on("error", () => undefined);
    onConnection(s);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  return {
    port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

test("dot-stuffing, bare LF → CRLF and 8-bit bytes intact on the wire", async () => {
  await withSink({}, async (sink) => {
    const client = await connectTo(sink);
    const source = Buffer.concat([b("Subject: t\n\n.leading dot\r\n..two\nbare\rcr\r\n"), Buffer.from([0xc3, 0xa9, 0xff, 0x80]), b("\n.")]);
    const result = await client.sendMail({ from: "a@example.net", to: [{ address: "b@example.org" }], message: Readable.from([source]) });
    await client.quit();
    assert.deepEqual(result.recipients, [{ address: "b@example.org", outcome: "delivered", detail: "250 2.0.0 Ok: queued" }]);
    assert.equal(result.dataReply?.code, 250);
    const [msg] = sink.messages;
    assert.deepEqual(
      msg.raw,
      Buffer.concat([b("Subject: t\r\n\r\n..leading dot\r\n...two\r\nbare\r\ncr\r\n"), Buffer.from([0xc3, 0xa9, 0xff, 0x80]), b("\r\n..\r\n.\r\n")]),
    );
    assert.deepEqual(
      msg.data,
      Buffer.concat([b("Subject: t\r\n\r\n.leading dot\r\n..two\r\nbare\r\ncr\r\n"), Buffer.from([0xc3, 0xa9, 0xff, 0x80]), b("\r\n.\r\n")]),
    );
    assert.equal(msg.from, "a@example.net");
    assert.deepEqual(msg.to, ["b@example.org"]);
  });
});

test("a line break split across chunks is still one CRLF; a lone '.' line split from its CRLF is stuffed", async () => {
  await withSink({}, async (sink) => {
    const client = await connectTo(sink);
    await client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }], message: Readable.from([b("a\r"), b("\n."), b("\r\nb")]) });
    await client.quit();
    assert.equal(sink.messages[0].raw.toString("latin1"), "a\r\n..\r\nb\r\n.\r\n");
  });
});

test("PIPELINING: MAIL, every RCPT and DATA go out in one write (RFC 2920 §3.1); without it, one command at a time", async () => {
  await withSink({}, async (sink) => {
    const client = await connectTo(sink);
    await client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }, { address: "c@y.test" }], message: Readable.from([b("x\r\n")]) });
    await client.quit();
    const batch = sink.commandBatches.find((cmds) => cmds.some((c) => c.startsWith("MAIL")));
    assert.deepEqual(batch, ["MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "RCPT TO:<c@y.test>", "DATA"]);
    assert.equal(sink.messages.length, 1);
  });
  await withSink({ pipelining: false }, async (sink) => {
    const client = await connectTo(sink);
    assert.equal(client.capabilities.pipelining, false);
    await client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }, { address: "c@y.test" }], message: Readable.from([b("x\r\n")]) });
    await client.quit();
    const transaction = sink.commandBatches.filter((cmds) => cmds.some((c) => /^(MAIL|RCPT|DATA)/.test(c)));
    assert.deepEqual(transaction, [["MAIL FROM:<a@x.test>"], ["RCPT TO:<b@y.test>"], ["RCPT TO:<c@y.test>"], ["DATA"]]);
    assert.equal(sink.messages.length, 1);
  });
});

test("per-recipient 550 mixed with 250: only accepted recipients get the message and the DATA reply", async () => {
  const rcptReply = (a: string) => (a.startsWith("nobody") ? "550 5.1.1 <" + a + ">: Recipient address rejected" : undefined);
  await withSink({ rcptReply }, async (sink) => {
    const client = await connectTo(sink);
    const result = await client.sendMail({
      from: "a@x.test",
      to: [{ address: "one@y.test" }, { address: "nobody@y.test" }, { address: "two@y.test" }],
      message: Readable.from([b("x\r\n")]),
    });
    await client.quit();
    assert.deepEqual(
      result.recipients.map((r) => [r.address, r.outcome, r.detail]),
      [
        ["one@y.test", "delivered", "250 2.0.0 Ok: queued"],
        ["nobody@y.test", "failed", "550 5.1.1 <nobody@y.test>: Recipient address rejected"],
        ["two@y.test", "delivered", "250 2.0.0 Ok: queued"],
      ],
    );
    assert.deepEqual(sink.messages[0].to, ["one@y.test", "two@y.test"]);
  });
});

test("4xx at RCPT and at end of data → deferred; all rejected → no message data (pipelined DATA refused, then RSET)", async () => {
  await withSink({ rcptReply: () => "450 4.2.1 Mailbox busy" }, async (sink) => {
    const client = await connectTo(sink);
    const message = Readable.from([b("x\r\n")]);
    const result = await client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }], message });
    assert.deepEqual(result.recipients, [{ address: "b@y.test", outcome: "deferred", detail: "450 4.2.1 Mailbox busy" }]);
    assert.equal(result.dataReply, undefined);
    assert.ok(message.destroyed, "an unsent message stream is released");
    assert.ok(client.usable, "a refused DATA leaves the session fit for the next message");
    await client.quit();
    assert.deepEqual(sink.commands.slice(1), ["MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA", "RSET", "QUIT"]);
    assert.deepEqual(sink.unterminatedData, []);
  });
  await withSink({ pipelining: false, rcptReply: () => "450 4.2.1 Mailbox busy" }, async (sink) => {
    const client = await connectTo(sink);
    const result = await client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }], message: Readable.from([b("x\r\n")]) });
    assert.deepEqual(
      result.recipients.map((r) => r.outcome),
      ["deferred"],
    );
    await client.quit();
    assert.ok(!sink.commands.includes("DATA"), "lock-step: no DATA at all");
  });
  await withSink({ dataReply: () => "451 4.3.0 Queue write error" }, async (sink) => {
    const client = await connectTo(sink);
    const result = await client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }], message: Readable.from([b("x\r\n")]) });
    await client.quit();
    assert.deepEqual(result.recipients, [{ address: "b@y.test", outcome: "deferred", detail: "451 4.3.0 Queue write error" }]);
  });
});

test("a 354 despite no accepted recipient: no message byte and no '.' reach the server, the session is dropped", async () => {
  const rcptReply = (a: string) => (a.startsWith("nobody") ? "550 5.1.1 No such user" : undefined);
  await withSink({ rcptReply, dataWithoutRecipients: true }, async (sink) => {
    const client = await connectTo(sink);
    const message = Readable.from([b("must not arrive\r\n")]);
    const result = await client.sendMail({ from: "a@x.test", to: [{ address: "nobody1@y.test" }, { address: "nobody2@y.test" }], message });
    assert.deepEqual(
      result.recipients.map((r) => [r.address, r.outcome, r.detail]),
      [
        ["nobody1@y.test", "failed", "550 5.1.1 No such user"],
        ["nobody2@y.test", "failed", "550 5.1.1 No such user"],
      ],
    );
    assert.equal(result.dataReply, undefined);
    assert.ok(message.destroyed);
    assert.equal(client.usable, false);
    await sink.waitForClosedSessions(1);
    assert.equal(sink.commands.at(-1), "DATA");
    assert.deepEqual(sink.unterminatedData, [Buffer.alloc(0)], "closed in the data phase with nothing sent after 354");
    assert.equal(sink.messages.length, 0);
  });
  await withSink({ mailReply: () => "451 4.3.0 Try later", dataWithoutRecipients: true }, async (sink) => {
    const client = await connectTo(sink);
    const result = await client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }], message: Readable.from([b("x\r\n")]) });
    assert.deepEqual(result.recipients, [{ address: "b@y.test", outcome: "deferred", detail: "451 4.3.0 Try later" }]);
    await sink.waitForClosedSessions(1);
    assert.deepEqual(sink.unterminatedData, [Buffer.alloc(0)]);
    assert.equal(sink.messages.length, 0);
  });
});

test("the pool does not reuse a session dropped after a 354 with no recipient", async () => {
  const rcptReply = (a: string) => (a.startsWith("nobody") ? "550 5.1.1 No such user" : undefined);
  await withSink({ rcptReply, dataWithoutRecipients: true }, async (sink) => {
    const pool = new SmtpPool({ maxTotal: 1, maxPerDestination: 1, idleTimeoutMs: 5000, maxMessagesPerSession: 100 });
    let connects = 0;
    const send = (address: string) =>
      pool.withSession(
        "y.test",
        "sink",
        () => (connects++, connectTo(sink)),
        async (client) => {
          const sent = await client.sendMail({ from: "a@x.test", to: [{ address }], message: Readable.from([b("x\r\n")]) });
          return { value: sent.recipients[0].outcome, reusable: true };
        },
      );
    assert.equal(await send("nobody@y.test"), "failed");
    assert.equal(await send("b@y.test"), "delivered");
    await pool.close();
    assert.equal(connects, 2);
    assert.equal(sink.messages.length, 1);
  });
});

test("SIZE: declared when offered, and a message larger than the peer's limit is refused before MAIL (RFC 1870)", async () => {
  await withSink({ size: 100 }, async (sink) => {
    const client = await connectTo(sink);
    assert.equal(client.capabilities.sizeLimit, 100);
    const big = await client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }], size: 1000, message: Readable.from([Buffer.alloc(1000, 0x61)]) });
    assert.equal(big.recipients[0].outcome, "failed");
    assert.match(big.recipients[0].detail, /^552 5\.3\.4 /);
    assert.ok(!sink.commands.some((c) => c.startsWith("MAIL")), "nothing was sent");
    const small = await client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }], size: 4, message: Readable.from([b("hi\r\n")]) });
    await client.quit();
    assert.equal(small.recipients[0].outcome, "delivered");
    assert.deepEqual(sink.messages[0].mailParams, ["SIZE=4"]);
  });
});

test("DSN parameters only when the peer offers DSN (RFC 3461), xtext-encoded", async () => {
  const mail = () => ({
    from: "a@x.test",
    to: [{ address: "b@y.test", notify: ["SUCCESS" as const, "FAILURE" as const], orcpt: { addrType: "rfc822", address: "B+x=y@y.test" } }],
    ret: "HDRS" as const,
    envid: "id+1=2",
    body8bit: true,
    message: Readable.from([b("x\r\n")]),
  });
  await withSink({ dsn: false }, async (sink) => {
    const client = await connectTo(sink);
    await client.sendMail(mail());
    await client.quit();
    assert.deepEqual(sink.messages[0].mailParams, ["BODY=8BITMIME"]);
    assert.deepEqual(sink.messages[0].rcptParams, [[]]);
  });
  await withSink({ dsn: true }, async (sink) => {
    const client = await connectTo(sink);
    await client.sendMail(mail());
    await client.quit();
    assert.deepEqual(sink.messages[0].mailParams, ["BODY=8BITMIME", "RET=HDRS", "ENVID=id+2B1+3D2"]);
    assert.deepEqual(sink.messages[0].rcptParams, [["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;B+2Bx+3Dy@y.test"]]);
  });
});

test("STARTTLS required and opportunistic against a server that offers it", async () => {
  const cert = await testCert();
  await withSink({ tls: cert }, async (sink) => {
    for (const tls of ["starttls-required", "starttls-opportunistic"] as const) {
      const client = await connectTo(sink, { tls, servername: "localhost", ca: cert.cert });
      assert.equal(client.secure, true);
      assert.equal(client.capabilities.starttls, false, "capabilities re-read after TLS (RFC 3207 §4.2)");
      await client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }], message: Readable.from([b("x\r\n")]) });
      await client.quit();
    }
    assert.deepEqual(
      sink.messages.map((m) => m.tls),
      [true, true],
    );
    assert.equal(sink.commands.filter((c) => c.startsWith("EHLO")).length, 4, "EHLO again after each handshake");
  });
});

test("server without STARTTLS: required fails, opportunistic proceeds in clear", async () => {
  await withSink({}, async (sink) => {
    await assert.rejects(connectTo(sink, { tls: "starttls-required" }), (err: SmtpClientError) => err.kind === "tls" && /not offered/.test(err.message));
    const client = await connectTo(sink, { tls: "starttls-opportunistic" });
    assert.equal(client.secure, false);
    await client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }], message: Readable.from([b("x\r\n")]) });
    await client.quit();
    assert.equal(sink.messages[0].tls, false);
  });
});

test("a certificate we cannot verify fails the TLS upgrade", async () => {
  const cert = await testCert();
  await withSink({ tls: cert }, async (sink) => {
    await assert.rejects(connectTo(sink, { tls: "starttls-required", servername: "localhost" }), (err: SmtpClientError) => err.kind === "tls");
  });
});

test("bytes the server pipelines after its STARTTLS reply are refused (response injection)", async () => {
  const cert = await testCert();
  await withSink({ tls: cert, injectAfterStarttls: "250-injected\r\n" }, async (sink) => {
    await assert.rejects(
      connectTo(sink, { tls: "starttls-opportunistic", servername: "localhost", ca: cert.cert }),
      (err: SmtpClientError) => err.kind === "protocol" && /before the TLS handshake/.test(err.message),
    );
    assert.equal(sink.messages.length, 0);
  });
});

test("implicit TLS (port 465 style)", async () => {
  const cert = await testCert();
  await withSink({ tls: cert, implicitTls: true }, async (sink) => {
    const client = await connectTo(sink, { tls: "implicit", servername: "localhost", ca: cert.cert });
    assert.equal(client.secure, true);
    await client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }], message: Readable.from([b("x\r\n")]) });
    await client.quit();
    assert.equal(sink.messages[0].tls, true);
  });
});

test("AUTH: refused in clear, PLAIN chosen by auto over TLS, bad credentials give the 535 reply", async () => {
  const cert = await testCert();
  const transcript: string[] = [];
  await withSink({ tls: cert, auth: { username: "relay", password: "s3cret" }, requireAuth: true }, async (sink) => {
    const clear = await connectTo(sink);
    await assert.rejects(clear.auth("auto", { username: "relay", password: "s3cret" }), (e: SmtpClientError) => e.kind === "policy");
    await clear.quit();

    const wrong = await connectTo(sink, { tls: "starttls-required", servername: "localhost", ca: cert.cert });
    await assert.rejects(wrong.auth("auto", { username: "relay", password: "nope" }), (e: SmtpClientError) => e.reply?.code === 535 && e.permanent);
    await wrong.quit();

    const client = await connectTo(sink, {
      tls: "starttls-required",
      servername: "localhost",
      ca: cert.cert,
      onTranscript: (dir, line) => transcript.push(`${dir}: ${line}`),
    });
    await client.auth("auto", { username: "relay", password: "s3cret" });
    await client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }], message: Readable.from([b("x\r\n")]) });
    await client.quit();
    assert.equal(sink.messages[0].authUser, "relay");
  });
  assert.ok(transcript.includes("C: AUTH PLAIN <credentials>"));
  assert.ok(!transcript.some((l) => l.includes(Buffer.from("\0relay\0s3cret").toString("base64"))), "no secret in the transcript");
});

test("AUTH over plaintext when explicitly allowed", async () => {
  await withSink({ auth: { username: "u", password: "p" } }, async (sink) => {
    const client = await connectTo(sink, { allowPlaintextAuth: true });
    await client.auth("PLAIN", { username: "u", password: "p" });
    await client.quit();
  });
});

test("EHLO refused with 5xx → HELO fallback, no extensions used (RFC 5321 §3.2)", async () => {
  await withSink({ ehlo: false }, async (sink) => {
    const client = await connectTo(sink);
    assert.equal(client.capabilities.esmtp, false);
    await client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }], size: 3, body8bit: true, message: Readable.from([b("x\r\n")]) });
    await client.quit();
    assert.deepEqual(sink.messages[0].mailParams, []);
    assert.equal(sink.messages[0].helo, "client.test");
  });
});

test("a 554 greeting is a reply error; a silent server hits the deadline; a malformed reply is a protocol error", async () => {
  await withSink({ greeting: "554 5.3.2 Not accepting mail" }, async (sink) => {
    await assert.rejects(connectTo(sink), (e: SmtpClientError) => e.kind === "reply" && e.reply?.code === 554);
  });
  const silent = await rawServer(() => undefined);
  await assert.rejects(
    SmtpClient.connect({ host: "127.0.0.1", port: silent.port, tls: "none", heloName: "c.test", timeoutMs: 200 }),
    (e: SmtpClientError) => e.kind === "timeout",
  );
  await silent.close();
  const sloppy = await rawServer((s) => s.write("220 bare lf\n"));
  await assert.rejects(
    SmtpClient.connect({ host: "127.0.0.1", port: sloppy.port, tls: "none", heloName: "c.test", timeoutMs: 2000 }),
    (e: SmtpClientError) => e.kind === "protocol",
  );
  await sloppy.close();
});

test("connection refused is a network error", async () => {
  const gone = await rawServer(() => undefined);
  await gone.close();
  await assert.rejects(
    SmtpClient.connect({ host: "127.0.0.1", port: gone.port, tls: "none", heloName: "c.test", timeoutMs: 2000 }),
    (e: SmtpClientError) => e.kind === "network" && /ECONNREFUSED/.test(e.message),
  );
});

test("a message source that fails mid-DATA never gets the terminating dot", async () => {
  await withSink({}, async (sink) => {
    const client = await connectTo(sink);
    let reads = 0;
    const source = new Readable({
      read() {
        if (reads++ === 0) this.push(b("first part\r\n"));
        else this.destroy(new Error("disk read error"));
      },
    });
    const sending = client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }], message: source });
    await assert.rejects(sending, (e: SmtpClientError) => e.kind === "local" && /disk read error/.test(e.message));
    assert.equal(sink.messages.length, 0);
  });
});

test("addresses that could break the command line are refused before sending", async () => {
  await withSink({}, async (sink) => {
    const client = await connectTo(sink);
    for (const bad of ["a@x.test>\r\nRCPT TO:<evil@z.test", "a@x>.test", "a\n@x.test"]) {
      await assert.rejects(
        client.sendMail({ from: "a@x.test", to: [{ address: bad }], message: Readable.from([b("x\r\n")]) }),
        (e: SmtpClientError) => e.kind === "policy",
      );
    }
    await client.quit();
    assert.ok(!sink.commands.some((c) => c.startsWith("MAIL") || c.startsWith("RCPT")));
  });
});

test("two messages on one session, RSET between them", async () => {
  await withSink({}, async (sink) => {
    const client = await connectTo(sink);
    await client.sendMail({ from: "a@x.test", to: [{ address: "b@y.test" }], message: Readable.from([b("one\r\n")]) });
    await client.rset();
    await client.sendMail({ from: "", to: [{ address: "c@y.test" }], message: Readable.from([b("two\r\n")]) });
    await client.quit();
    await sink.waitForMessages(2);
    assert.deepEqual(
      sink.messages.map((m) => [m.from, m.data.toString()]),
      [
        ["a@x.test", "one\r\n"],
        ["", "two\r\n"],
      ],
    );
  });
});
