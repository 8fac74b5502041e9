/**
 * Issue 12: an organisation's own Postfix relays through Postern with one account. Postfix's
 * delivery reports carry `MAIL FROM:<>` and `From: MAILER-DAEMON@<its host name>`; its cron mail
 * comes from root@<its host name>. A real Postfix (private instance, 127.0.0.1 ephemeral ports,
 * relayhost = Postern's submission port with STARTTLS and SASL) generates a bounce through its
 * error(8) transport; Postern refuses the report from a normal account and relays it once the
 * account is a relay client (`postern user relay-client … on`).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import nodemailer from "nodemailer";
import { runCli, startPostern } from "./helpers/postern.js";
import { postfixUnavailable, startPostfix } from "./helpers/postfix.js";
import { startSink } from "../delivery/helpers/sink.js";
import { readDsn } from "../queue/dsn-reader.js";

const RELAY = { address: "relay@example.org", password: "postfix-relay-secret", senders: ["@example.org"] };

/** A message into the private Postfix's smtpd (a mynetworks client: it may relay). */
async function inject(port: number, from: string, to: string, subject: string): Promise<void> {
  const t = nodemailer.createTransport({ host: "127.0.0.1", port, secure: false, ignoreTLS: true });
  try {
    await t.sendMail({ envelope: { from, to: [to] }, raw: `From: ${from}\r\nTo: ${to}\r\nSubject: ${subject}\r\n\r\n${subject}\r\n` });
  } finally {
    t.close();
  }
}

test("relay client (issue 12): a real Postfix's null-sender bounce (From: MAILER-DAEMON@its host) is refused through a normal account and relayed through a relay-client account", {
  skip: postfixUnavailable(),
}, async () => {
  const sink = await startSink({});
  const server = await startPostern({ users: [RELAY], config: { relay: { smarthost: `127.0.0.1:${sink.port}` } } });
  let postfix: Awaited<ReturnType<typeof startPostfix>> | undefined;
  try {
    postfix = await startPostfix({
      hostname: "host.example.org",
      relayPort: server.ports.submission,
      login: RELAY.address,
      password: RELAY.password,
      // Postfix bounces this at once (error(8)) to the sender, bob@elsewhere.test, through Postern.
      transport: { "fail.host.example.org": "error:5.1.1 no such mailbox here" },
    });

    // A normal account with "@example.org": the report's From: is a host under it, not example.org.
    await inject(postfix.smtpPort, "bob@elsewhere.test", "nobody@fail.host.example.org", "first try");
    const refused = await server.waitForLog((l) => l.event === "data-refused" && l.from === "", 30_000);
    assert.match(String(refused.reason), /From: header MAILER-DAEMON@host\.example\.org not owned by relay@example\.org/);
    // Postfix got the 553 and gave up on the report (a report is never reported on).
    await postfix.waitForLog(/to=<bob@elsewhere\.test>.*relay=127\.0\.0\.1.*status=bounced .*553 5\.7\.1/);
    assert.equal(sink.messages.length, 0, "nothing was relayed");

    const on = await runCli(["user", "relay-client", RELAY.address, "on", "--config", server.configPath]);
    assert.equal(on.code, 0, on.stderr);
    assert.match(on.stdout, /relay client on/);

    await inject(postfix.smtpPort, "bob@elsewhere.test", "nobody@fail.host.example.org", "second try");
    await sink.waitForMessages(1, 30_000);
    const report = sink.messages[0]!;
    assert.equal(report.from, "", "relayed from the null sender");
    assert.deepEqual(report.to, ["bob@elsewhere.test"]);
    const dsn = await readDsn(report.data);
    assert.equal(dsn.mail.from?.value[0]?.address, "MAILER-DAEMON@host.example.org");
    assert.equal(dsn.recipients[0]!.get("action"), "failed");
    assert.match(dsn.recipients[0]!.get("final-recipient") ?? "", /nobody@fail\.host\.example\.org/);
    assert.match(report.data.toString(), /by mail\.example\.org \(Postern\) with ESMTPSA /, "came in authenticated");

    // The same account relays the host's own mail (cron: root@<host>, Postfix's default myorigin).
    await inject(postfix.smtpPort, "root@host.example.org", "admin@elsewhere.test", "cron output");
    await sink.waitForMessages(2, 30_000);
    assert.equal(sink.messages[1]!.from, "root@host.example.org");
    // The last message's own line: lines arrive in order, so a refusal logged before it is in by then.
    await server.waitForLog((l) => l.event === "queued" && l.from === "root@host.example.org");
    assert.ok(!server.logs.some((l) => l.event === "mail-refused"), "no MAIL FROM was refused");
  } finally {
    await postfix?.stop();
    await server.cleanup();
    await sink.close();
  }
});
