/**
 * Per-user sending limits through the real server: past recipientsPerHour a RCPT gets 450 4.7.1,
 * past messagesPerHour a MAIL does; other users are unaffected; each refusal is logged.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startPostern, type Postern } from "./helpers/postern.js";
import { RawSmtp, b64 } from "./helpers/raw-smtp.js";
import { startSink, type Sink } from "../delivery/helpers/sink.js";

const JOHN = { address: "john@example.org", password: "john's password" };
const MARY = { address: "mary@example.org", password: "mary's password" };
let server: Postern;
let sink: Sink;

before(async () => {
  sink = await startSink({});
  server = await startPostern({
    users: [JOHN, MARY],
    config: { relay: { smarthost: `127.0.0.1:${sink.port}` }, sendLimits: { messagesPerHour: 2, recipientsPerHour: 3 } },
  });
});
after(async () => {
  await server?.cleanup();
  await sink?.close();
});

async function session(user: { address: string; password: string }): Promise<RawSmtp> {
  const c = await RawSmtp.open(server.ports.submissions, { tls: true });
  await c.reply();
  await c.expect("EHLO client.test", 250);
  await c.expect(`AUTH PLAIN ${b64(`\0${user.address}\0${user.password}`)}`, 235);
  return c;
}

async function send(c: RawSmtp, from: string, to: string[]): Promise<void> {
  await c.expect(`MAIL FROM:<${from}>`, 250);
  for (const rcpt of to) await c.expect(`RCPT TO:<${rcpt}>`, 250);
  await c.expect("DATA", 354);
  await c.expect(`From: ${from}\r\nSubject: limits\r\n\r\nhello\r\n.`, 250);
}

test("recipients per hour, then messages per hour: 450 4.7.1 at RCPT and at MAIL, per user, logged", async () => {
  const c = await session(JOHN);
  await send(c, JOHN.address, ["a@elsewhere.test", "b@elsewhere.test"]); // 2 of 3 recipients
  await c.expect(`MAIL FROM:<${JOHN.address}>`, 250);
  await c.expect("RCPT TO:<c@elsewhere.test>", 250); // the 3rd
  const over = await c.cmd("RCPT TO:<d@elsewhere.test>");
  assert.match(over.text, /^450 4\.7\.1 .*recipient limit/);
  await c.expect("DATA", 354);
  await c.expect(`From: ${JOHN.address}\r\nSubject: limits\r\n\r\nhello\r\n.`, 250); // message 2 of 2
  const mail = await c.cmd(`MAIL FROM:<${JOHN.address}>`);
  assert.match(mail.text, /^450 4\.7\.1 .*message limit/);
  c.close();
  // Log lines arrive on the server's stdout after the replies: wait for them.
  await server.waitForLog((l) => l.event === "rcpt-refused" && String(l.reason).startsWith("send limit: 3 recipients"));
  await server.waitForLog((l) => l.event === "mail-refused" && String(l.reason).startsWith("send limit: 2 messages"));

  // Mary has her own budget.
  const m = await session(MARY);
  await send(m, MARY.address, ["x@elsewhere.test"]);
  m.close();
});
