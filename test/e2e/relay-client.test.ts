/**
 * Issue 12 without Postfix: null-sender mail through the submission port with nodemailer, from a
 * normal account and from a relay client (`postern user add … --relay-client`), and the CLI that
 * sets the flag. test/e2e/relay-client-postfix.test.ts drives the same path with a real Postfix.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import nodemailer from "nodemailer";
import { runCli, startPostern } from "./helpers/postern.js";
import { startSink } from "../delivery/helpers/sink.js";

const NORMAL = { address: "ann@example.org", password: "ann-pass-12", senders: ["@example.org"] };
const RELAY = { address: "relay@example.org", password: "relay-pass-12", senders: ["@example.org"], relayClient: true };

async function send(port: number, user: { address: string; password: string }, from: string, headers: string): Promise<string> {
  const t = nodemailer.createTransport({
    host: "127.0.0.1",
    port,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user: user.address, pass: user.password },
  });
  try {
    const info = await t.sendMail({
      envelope: { from, to: ["bob@elsewhere.test"] },
      raw: `${headers}To: bob@elsewhere.test\r\nSubject: report\r\n\r\nbody\r\n`,
    });
    return info.response;
  } catch (err) {
    return String((err as { response?: string }).response ?? err);
  } finally {
    t.close();
  }
}

test("null sender (issue 12): a normal account sends MAIL FROM:<> only with a From: it owns; a relay client passes on its host's MAILER-DAEMON reports and mail from its hosts", async () => {
  const sink = await startSink({});
  const server = await startPostern({ users: [NORMAL, RELAY], config: { relay: { smarthost: `127.0.0.1:${sink.port}` } } });
  try {
    const port = server.ports.submission;
    const report = "From: MAILER-DAEMON@host.example.org (Mail Delivery System)\r\n";
    assert.match(await send(port, NORMAL, "", "From: Ann <ann@example.org>\r\n"), /^250 /, "a read receipt of its own");
    assert.match(await send(port, NORMAL, "", ""), /^553 5\.7\.1 From: header required/, "no From: at all");
    assert.match(await send(port, NORMAL, "", report), /^553 5\.7\.1 .*relay-client account/, "a mail server's report through a normal account");
    assert.match(
      await send(port, NORMAL, "root@host.example.org", "From: root@host.example.org\r\n"),
      /^553 5\.7\.1 /,
      "a host under its domain is not a normal account's",
    );

    assert.match(await send(port, RELAY, "", report), /^250 /);
    assert.match(await send(port, RELAY, "root@host.example.org", "From: root@host.example.org\r\n"), /^250 /, "cron mail of its host");
    assert.match(await send(port, RELAY, "x@evilexample.org", "From: x@evilexample.org\r\n"), /^553 5\.7\.1 /, "a label boundary, not a suffix");
    assert.match(await send(port, RELAY, "", "From: x@example.net\r\n"), /^553 5\.7\.1 /, "only its own domains");

    await sink.waitForMessages(3);
    assert.deepEqual(
      sink.messages.map((m) => m.from),
      ["", "", "root@host.example.org"],
    );
  } finally {
    await server.cleanup();
    await sink.close();
  }
});

test("postern user relay-client: set at add, listed, turned off; a bad state or unknown user is an error", async () => {
  const server = await startPostern({ users: [RELAY, NORMAL] });
  try {
    const cfg = ["--config", server.configPath];
    const listed = await runCli(["user", "list", ...cfg]);
    assert.match(listed.stdout, /^relay@example\.org \(relay client\) {2}senders: @example\.org$/m);
    assert.match(listed.stdout, /^ann@example\.org {2}senders: @example\.org$/m);
    assert.equal((await runCli(["user", "relay-client", RELAY.address, "off", ...cfg])).code, 0);
    assert.doesNotMatch((await runCli(["user", "list", ...cfg])).stdout, /relay client/);
    const bad = await runCli(["user", "relay-client", RELAY.address, "yes", ...cfg]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /expected on or off/);
    const ghost = await runCli(["user", "relay-client", "ghost@example.org", "on", ...cfg]);
    assert.notEqual(ghost.code, 0);
    assert.match(ghost.stderr, /no such user/);
  } finally {
    await server.cleanup();
  }
});
