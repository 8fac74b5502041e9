/**
 * Port 25 as a stranger sees it: mail for our domains is delivered into Maildir, nothing relays
 * without AUTH, address tricks never route, and an authenticated client may relay.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { startPostern, type Postern } from "./helpers/postern.js";
import { RawSmtp, b64 } from "./helpers/raw-smtp.js";
import { startSink, type Sink } from "../delivery/helpers/sink.js";

const JOHN = { address: "john@example.org", password: "s3cret-pass" };
let server: Postern;
let sink: Sink;

before(async () => {
  sink = await startSink({});
  server = await startPostern({ users: [JOHN], config: { relay: { smarthost: `127.0.0.1:${sink.port}` } } });
});
after(async () => {
  await server?.cleanup();
  await sink?.close();
});

async function stranger(): Promise<RawSmtp> {
  const c = await RawSmtp.open(server.ports.mta);
  const greeting = await c.reply();
  assert.match(greeting.text, /^220 mail\.example\.org /);
  await c.expect("EHLO stranger.test", 250);
  return c;
}

async function maildirFiles(user: string): Promise<string[]> {
  try {
    return await readdir(join(server.dir, "mail/example.org", user, "new"));
  } catch {
    return [];
  }
}

test("a stranger on port 25 delivers to a local user's Maildir", async () => {
  const c = await stranger();
  await c.expect("MAIL FROM:<alice@elsewhere.test>", 250);
  await c.expect("RCPT TO:<John@Example.ORG>", 250);
  await c.expect("DATA", 354);
  const r = await c.cmd("Subject: hi\r\n\r\nhello John\r\n.");
  assert.match(r.text, /^250 2\.0\.0 Ok: queued as (\S+)$/);
  await c.expect("QUIT", 221);
  const id = /queued as (\S+)/.exec(r.text)![1]!;
  await server.waitForLog((l) => l.event === "delivered" && l.id === id);
  const files = await maildirFiles("john");
  assert.equal(files.length, 1);
  const content = await readFile(join(server.dir, "mail/example.org/john/new", files[0]!), "utf8");
  assert.match(content, /^Return-Path: <alice@elsewhere\.test>\r\n/);
  assert.match(content, /\r\nReceived: from stranger\.test \(\[127\.0\.0\.1\]\)\r\n\tby mail\.example\.org \(Postern\) with ESMTP id /);
  assert.match(content, /\r\n\r\nhello John\r\n$/);
});

test("relay is refused to an unauthenticated client: 554 5.7.1 Relay access denied", async () => {
  const c = await stranger();
  await c.expect("MAIL FROM:<alice@elsewhere.test>", 250);
  const r = await c.cmd("RCPT TO:<victim@elsewhere.test>");
  assert.equal(r.text, "554 5.7.1 <victim@elsewhere.test>: Relay access denied");
  await server.waitForLog((l) => l.event === "rcpt-refused" && l.to === "victim@elsewhere.test");
  c.close();
});

const tricks: [string, RegExp][] = [
  ["<victim%elsewhere.test@example.org>", /^550 5\.1\.1 /], // %-hack: just an unknown local part
  ["<elsewhere.test!victim@example.org>", /^550 5\.1\.1 /], // bang path
  ["<@example.org:victim@elsewhere.test>", /^554 5\.7\.1 /], // source route: final hop decides
  ['<"victim@elsewhere.test"@example.org>', /^501 5\.1\.3 /], // quoted @
  ["<victim@elsewhere.test@example.org>", /^501 5\.1\.3 /], // second @
  ["<victim@[192.0.2.1]>", /^554 5\.7\.1 /], // IP literal that is not ours
  ["<victim@example.org.elsewhere.test>", /^554 5\.7\.1 /], // look-alike
  ["<nobody@example.org>", /^550 5\.1\.1 /], // unknown local user: refused now, no backscatter
];
for (const [rcpt, expected] of tricks) {
  test(`address trick ${rcpt} never relays`, async () => {
    const c = await stranger();
    await c.expect("MAIL FROM:<alice@elsewhere.test>", 250);
    const r = await c.cmd(`RCPT TO:${rcpt}`);
    assert.match(r.text, expected);
    c.close();
  });
}

test("trailing dot on a local domain still counts as local", async () => {
  const c = await stranger();
  await c.expect("MAIL FROM:<alice@elsewhere.test>", 250);
  await c.expect("RCPT TO:<john@example.org.>", 250);
  c.close();
});

test("AUTH on port 25 before TLS points the user to the submission ports", async () => {
  const c = await stranger();
  const r = await c.cmd(`AUTH PLAIN ${b64(`\0${JOHN.address}\0${JOHN.password}`)}`);
  assert.equal(r.text, "503 5.5.1 Error: AUTH not available here; use port 587 (STARTTLS) or 465");
  c.close();
});

test("after STARTTLS and AUTH on port 25 the client may relay", async () => {
  const before = sink.messages.length;
  const c = await stranger();
  await c.expect("STARTTLS", 220);
  await c.upgradeTls();
  const ehlo = await c.expect("EHLO stranger.test", 250);
  assert.ok(ehlo.lines.some((l) => l.includes("AUTH ")));
  await c.expect(`AUTH PLAIN ${b64(`\0${JOHN.address}\0${JOHN.password}`)}`, 235);
  await c.expect(`MAIL FROM:<${JOHN.address}>`, 250);
  await c.expect("RCPT TO:<friend@elsewhere.test>", 250);
  await c.expect("DATA", 354);
  await c.expect("Subject: relayed\r\n\r\nvia 25\r\n.", 250);
  c.close();
  await sink.waitForMessages(before + 1);
  assert.deepEqual(sink.messages[before]!.to, ["friend@elsewhere.test"]);
});

test("VRFY never confirms a user (252) and EXPN is disabled", async () => {
  const c = await stranger();
  assert.match((await c.cmd("VRFY john")).text, /^252 2\.0\.0 /);
  assert.match((await c.cmd("VRFY nobody")).text, /^252 2\.0\.0 /);
  assert.match((await c.cmd("EXPN staff")).text, /^502 5\.5\.1 /);
  c.close();
});

test("EHLO advertises the extensions with SIZE and enhanced codes on every reply", async () => {
  const c = await RawSmtp.open(server.ports.mta);
  await c.reply();
  const r = await c.expect("EHLO stranger.test", 250);
  for (const ext of ["PIPELINING", "SIZE 26214400", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN", "STARTTLS"]) {
    assert.ok(r.lines.some((l) => l.slice(4) === ext), `${ext} advertised`);
  }
  assert.ok(!r.lines.some((l) => l.includes("AUTH")), "no AUTH before TLS on port 25");
  assert.match((await c.cmd("NOOP")).text, /^250 2\.0\.0 /);
  assert.match((await c.cmd("RCPT TO:<john@example.org>")).text, /^503 5\.5\.1 /);
  assert.match((await c.cmd("FOO")).text, /^500 5\.5\.1 /);
  c.close();
});
