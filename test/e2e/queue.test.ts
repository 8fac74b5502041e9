/**
 * The queue survives: a message accepted while the smarthost is down is retried, survives a
 * restart of the server (even kill -9), and is delivered once the smarthost comes back.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { freePort } from "../helpers/test-config.js";
import { startPostern } from "./helpers/postern.js";
import { RawSmtp, b64 } from "./helpers/raw-smtp.js";
import { startSink } from "../delivery/helpers/sink.js";

/** One authenticated submission over implicit TLS; returns the queue id from the 250. */
async function submit(port: number, user: { address: string; password: string }, to: string, message: string): Promise<string> {
  const c = await RawSmtp.open(port, { tls: true });
  try {
    await c.reply();
    await c.expect("EHLO client.test", 250);
    await c.expect(`AUTH PLAIN ${b64(`\0${user.address}\0${user.password}`)}`, 235);
    await c.expect(`MAIL FROM:<${user.address}>`, 250);
    await c.expect(`RCPT TO:<${to}>`, 250);
    await c.expect("DATA", 354);
    const r = await c.cmd(`${message}\r\n.`);
    const id = /queued as (\S+)/.exec(r.text)?.[1];
    assert.ok(id, r.text);
    return id;
  } finally {
    c.close();
  }
}

test("a message deferred while the smarthost is down survives kill -9 and is delivered after restart", async () => {
  const smarthostPort = await freePort();
  const user = { address: "john@example.org", password: "restart-pass" };
  const server = await startPostern({ users: [user], config: { relay: { smarthost: `127.0.0.1:${smarthostPort}` } } });
  try {
    const id = await submit(server.ports.submissions, user, "far@elsewhere.test", "Subject: persistent\r\n\r\nstill here");
    await server.waitForLog((l) => l.event === "deferred" && l.id === id);

    await server.stop("SIGKILL");
    const sink = await startSink({ port: smarthostPort });
    try {
      await server.restart();
      await sink.waitForMessages(1);
      assert.deepEqual(sink.messages[0]!.to, ["far@elsewhere.test"]);
      assert.match(sink.messages[0]!.data.toString(), /\r\n\r\nstill here\r\n$/);
      await server.waitForLog((l) => l.event === "delivered" && l.id === id);
    } finally {
      await sink.close();
    }
  } finally {
    await server.cleanup();
  }
});

test("a permanent refusal from the smarthost marks the recipient failed and removes the message", async () => {
  const sink = await startSink({ rcptReply: () => "550 5.1.1 no such user here" });
  const user = { address: "john@example.org", password: "fail-pass" };
  const server = await startPostern({ users: [user], config: { relay: { smarthost: `127.0.0.1:${sink.port}` } } });
  try {
    const id = await submit(server.ports.submissions, user, "gone@elsewhere.test", "Subject: doomed\r\n\r\nx");
    const failed = await server.waitForLog((l) => l.event === "failed" && l.id === id);
    assert.match(String(failed.detail ?? failed.result ?? ""), /550 5\.1\.1/);
  } finally {
    await server.cleanup();
    await sink.close();
  }
});
