/**
 * Hostile clients against the real server: SMTP smuggling, STARTTLS command injection, oversized
 * messages, bodies before 354, dropped connections. Nothing half-received is ever delivered.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { startPostern, type Postern } from "./helpers/postern.js";
import { RawSmtp } from "./helpers/raw-smtp.js";

let server: Postern;

before(async () => {
  server = await startPostern({
    users: [{ address: "john@example.org", password: "pw-john-123" }],
    config: { limits: { messageSize: 64 * 1024, authFailureDelayMs: 10, errors: 5 } },
  });
});
after(async () => server?.cleanup());

async function delivered(): Promise<string[]> {
  try {
    return await readdir(join(server.dir, "mail/example.org/john/new"));
  } catch {
    return [];
  }
}

async function queueFiles(): Promise<string[]> {
  const all: string[] = [];
  for (const sub of ["msg", "env", "tmp"]) {
    try {
      all.push(...(await readdir(join(server.dir, "data/queue", sub))));
    } catch {
      /* not created yet */
    }
  }
  return all;
}

async function inData(): Promise<RawSmtp> {
  const c = await RawSmtp.open(server.ports.mta);
  await c.reply();
  await c.expect("EHLO evil.test", 250);
  await c.expect("MAIL FROM:<a@evil.test>", 250);
  await c.expect("RCPT TO:<john@example.org>", 250);
  await c.expect("DATA", 354);
  return c;
}

const smuggling: [string, string][] = [
  ["\\n.\\n", "Subject: x\r\n\r\nbody\n.\nMAIL FROM:<spoof@example.org>\r\n"],
  ["\\n.\\r\\n", "Subject: x\r\n\r\nbody\n.\r\nMAIL FROM:<spoof@example.org>\r\n"],
  ["\\r.\\r", "Subject: x\r\n\r\nbody\r.\rMAIL FROM:<spoof@example.org>\r\n"],
  ["\\r\\n.\\r", "Subject: x\r\n\r\nbody\r\n.\rMAIL FROM:<spoof@example.org>\r\n"],
];
for (const [name, payload] of smuggling) {
  test(`SMTP smuggling with ${name} is refused and nothing is delivered (CVE-2023-51764)`, async () => {
    const before = (await delivered()).length;
    const c = await inData();
    c.write(payload + "\r\n.\r\n");
    const r = await c.reply();
    assert.equal(r.code, 521);
    assert.match(r.text, /^521 5\.5\.2 /);
    await c.waitClosed();
    assert.equal((await delivered()).length, before);
  });
}

test("commands pipelined behind STARTTLS close the connection (CVE-2011-0411)", async () => {
  const c = await RawSmtp.open(server.ports.submission);
  await c.reply();
  await c.expect("EHLO evil.test", 250);
  c.write("STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n");
  const r = await c.reply();
  assert.match(r.text, /^554 5\.5\.0 /);
  await c.waitClosed();
});

test("a message body sent before the 354 is out of sync: 554 5.5.0 and close", async () => {
  const c = await RawSmtp.open(server.ports.mta);
  await c.reply();
  await c.expect("EHLO evil.test", 250);
  await c.expect("MAIL FROM:<a@evil.test>", 250);
  await c.expect("RCPT TO:<john@example.org>", 250);
  c.write("DATA\r\nSubject: early\r\n\r\nbody\r\n.\r\n");
  const r = await c.reply();
  assert.match(r.text, /^554 5\.5\.0 /);
  await c.waitClosed();
});

test("MAIL with SIZE= over the limit gets 552 5.3.4 (RFC 1870)", async () => {
  const c = await RawSmtp.open(server.ports.mta);
  await c.reply();
  await c.expect("EHLO evil.test", 250);
  const r = await c.cmd(`MAIL FROM:<a@evil.test> SIZE=${1024 * 1024}`);
  assert.match(r.text, /^552 5\.3\.4 /);
  c.close();
});

test("a message larger than the limit without SIZE= gets 552 5.3.4 and is not queued", async () => {
  const before = (await delivered()).length;
  const c = await inData();
  const line = "x".repeat(998) + "\r\n";
  c.write("Subject: big\r\n\r\n" + line.repeat(80) + ".\r\n");
  const r = await c.reply();
  assert.match(r.text, /^552 5\.3\.4 /);
  assert.equal((await c.cmd("NOOP")).code, 250, "the session goes on after the refusal");
  c.close();
  assert.equal((await delivered()).length, before);
});

test("a client that drops mid-DATA leaves nothing in the queue and nothing delivered", async () => {
  const before = (await delivered()).length;
  const c = await inData();
  c.write("Subject: half\r\n\r\nthis message never ends\r\n");
  c.close();
  await server.waitForLog((l) => l.event === "disconnect" && l.phase === "data");
  assert.deepEqual(await queueFiles(), []);
  assert.equal((await delivered()).length, before);
});

test("an HTTP request on the SMTP port closes the connection", async () => {
  const c = await RawSmtp.open(server.ports.mta);
  await c.reply();
  c.write("GET / HTTP/1.1\r\nHost: mail.example.org\r\n\r\n");
  const r = await c.reply();
  assert.match(r.text, /^221 2\.7\.0 /);
  await c.waitClosed();
});

test("a bare LF in a command line is refused with 5.5.2 and the connection closed", async () => {
  const c = await RawSmtp.open(server.ports.mta);
  await c.reply();
  c.write("EHLO evil.test\n");
  const r = await c.reply();
  assert.match(r.text, /^500 5\.5\.2 /);
  await c.waitClosed();
});

test("an overlong command line is refused with 500 5.5.2 and the connection closed", async () => {
  const c = await RawSmtp.open(server.ports.mta);
  await c.reply();
  c.write("EHLO " + "a".repeat(2000));
  const r = await c.reply();
  assert.match(r.text, /^500 5\.5\.2 /);
  await c.waitClosed();
});

test("too many errors end the session with 421 4.7.0", async () => {
  const c = await RawSmtp.open(server.ports.mta);
  await c.reply();
  for (let i = 0; i < 4; i++) assert.equal((await c.cmd("BOGUS")).code, 500);
  c.write("BOGUS\r\n");
  const last = await c.reply();
  assert.equal(last.code, 500);
  const bye = await c.reply();
  assert.match(bye.text, /^421 4\.7\.0 /);
  await c.waitClosed();
});

test("too many recipients get 452 4.5.3", async () => {
  const s = await startPostern({ users: [{ address: "john@example.org", password: "x-pass-1" }], config: { limits: { recipients: 2 } } });
  try {
    const c = await RawSmtp.open(s.ports.mta);
    await c.reply();
    await c.expect("EHLO evil.test", 250);
    await c.expect("MAIL FROM:<a@evil.test>", 250);
    await c.expect("RCPT TO:<john@example.org>", 250);
    await c.expect("RCPT TO:<postmaster@example.org>", 250);
    assert.match((await c.cmd("RCPT TO:<john+x@example.org>")).text, /^452 4\.5\.3 /);
    c.close();
  } finally {
    await s.cleanup();
  }
});
