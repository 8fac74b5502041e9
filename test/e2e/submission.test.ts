/**
 * The roaming user: submission on 587 (STARTTLS) and 465 (implicit TLS) with real clients —
 * nodemailer, openssl s_client and swaks — relayed to a smarthost sink with the body intact.
 * Conversations that need no real client are dialogs: test/dialogs/submission.txt.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import nodemailer from "nodemailer";
import { startPostern, type Postern } from "./helpers/postern.js";
import { b64 } from "./helpers/raw-smtp.js";
import { startSink, type Sink } from "../delivery/helpers/sink.js";

const JOHN = { address: "john@example.org", password: "correct horse battery staple" };
let server: Postern;
let sink: Sink;

before(async () => {
  sink = await startSink({});
  server = await startPostern({
    users: [JOHN],
    config: { relay: { smarthost: `127.0.0.1:${sink.port}` } },
  });
});
after(async () => {
  await server?.cleanup();
  await sink?.close();
});

function transport(port: number, secure: boolean, method?: string) {
  return nodemailer.createTransport({
    host: "127.0.0.1",
    port,
    secure,
    requireTLS: !secure,
    tls: { rejectUnauthorized: false },
    auth: { user: JOHN.address, pass: JOHN.password, method },
  });
}

const BODY = "Grüße aus Zürich — 8-bit UTF-8.\r\n.a line that starts with a dot\r\n..two dots\r\n.\r\nend\r\n";

for (const method of ["PLAIN", "LOGIN", "CRAM-MD5"]) {
  test(`nodemailer STARTTLS + AUTH ${method} on submission relays to the smarthost, body intact`, async () => {
    const before = sink.messages.length;
    const to = `friend-${method.toLowerCase()}@elsewhere.test`;
    // A raw message, so nodemailer sends our bytes as they are (8-bit, lines starting with dots).
    const raw = `From: ${JOHN.address}\r\nTo: ${to}\r\nSubject: hello ${method}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n${BODY}`;
    const info = await transport(server.ports.submission, false, method).sendMail({
      envelope: { from: JOHN.address, to: [to] },
      raw,
    });
    assert.match(info.response, /^250 2\.0\.0 Ok: queued as \S+/);
    await sink.waitForMessages(before + 1);
    const msg = sink.messages[before]!;
    assert.deepEqual(msg.to, [`friend-${method.toLowerCase()}@elsewhere.test`]);
    const data = msg.data.toString("utf8");
    assert.ok(data.includes(BODY), "body arrives byte for byte (dot-stuffing undone, 8-bit kept)");
    assert.match(data, /^Received: from \S+ \(\[127\.0\.0\.1\]\)\r\n\tby mail\.example\.org \(Postern\) with ESMTPSA id /);
    assert.match(data, /\(using TLSv1\.[23] with cipher \S+\)/);
  });
}

test("nodemailer on 465 (implicit TLS, RFC 8314) authenticates and relays", async () => {
  const before = sink.messages.length;
  const info = await transport(server.ports.submissions, true).sendMail({
    from: JOHN.address,
    to: "someone@elsewhere.test",
    subject: "over 465",
    text: "implicit TLS",
  });
  assert.match(info.response, /^250 2\.0\.0/);
  await sink.waitForMessages(before + 1);
});

test("openssl s_client -starttls smtp: AUTH PLAIN and a message, as the old guides do by hand", async () => {
  const before = sink.messages.length;
  // One step per reply, typed in lower case as the guides advise (so openssl does not renegotiate).
  const steps = [
    "ehlo client.test",
    `auth plain ${b64(`\0${JOHN.address}\0${JOHN.password}`)}`,
    `mail from:<${JOHN.address}>`,
    "rcpt to:<openssl@elsewhere.test>",
    "data",
    "Subject: by hand\n\ntyped into openssl\n.",
    "quit",
  ];
  const out = await new Promise<string>((ok, fail) => {
    const child = spawn("openssl", ["s_client", "-starttls", "smtp", "-crlf", "-quiet", "-connect", `127.0.0.1:${server.ports.submission}`], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let fed = 0;
    const feed = () => child.stdin.write(steps[fed++] + "\n");
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      const finals = stdout.split("\r\n").filter((l) => /^\d{3} /.test(l)).length;
      while (fed < steps.length && fed <= finals) feed();
    });
    child.stderr.on("data", () => undefined);
    child.on("error", fail);
    child.on("close", () => ok(stdout));
    feed();
  });
  assert.match(out, /235 2\.7\.0 Authentication successful/);
  assert.match(out, /250 2\.0\.0 Ok: queued as/);
  await sink.waitForMessages(before + 1);
});

test("swaks: STARTTLS + AUTH LOGIN relays a message", async () => {
  const before = sink.messages.length;
  const out = await new Promise<string>((ok) => {
    execFile(
      "swaks",
      [
        "--server",
        `127.0.0.1:${server.ports.submission}`,
        "--tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        JOHN.address,
        "--auth-password",
        JOHN.password,
        "--from",
        JOHN.address,
        "--to",
        "swaks@elsewhere.test",
        "--body",
        "from swaks",
      ],
      (_err, stdout) => ok(stdout),
    );
  });
  assert.match(out, /235 2\.7\.0 Authentication successful/);
  assert.match(out, /250 2\.0\.0 Ok: queued as/);
  await sink.waitForMessages(before + 1);
});
