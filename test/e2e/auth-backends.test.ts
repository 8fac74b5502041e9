/**
 * Each credential backend end to end, against the real program behind it, with real clients over
 * STARTTLS: a Dovecot passwd-file (CRAM-MD5 from a stored secret, reload without restart), Dovecot's
 * auth socket (SCRAM-SHA-256 passed through), and saslauthd (-a shadow, a real system user).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { appendFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { startPostern, type Postern } from "./helpers/postern.js";
import { RawSmtp } from "./helpers/raw-smtp.js";
import { startSink, type Sink } from "../delivery/helpers/sink.js";
import { createSystemUser, doveadmPw, startDovecot, startSaslauthd, type Daemon } from "../auth/helpers/daemons.js";
import { ScramSha256Client } from "../../src/sasl/scram-sha-256.js";

let sink: Sink;
before(async () => {
  sink = await startSink({});
});
after(async () => {
  await sink?.close();
});

const relay = () => ({ relay: { smarthost: `127.0.0.1:${sink.port}` } });

function swaks(port: number, auth: string, user: string, password: string, from: string): Promise<string> {
  return new Promise((ok) => {
    execFile(
      "swaks",
      ["--server", `127.0.0.1:${port}`, "--tls", "--auth", auth, "--auth-user", user, "--auth-password", password,
        "--from", from, "--to", "friend@elsewhere.test", "--body", `via ${auth}`],
      (_err, stdout) => ok(stdout),
    );
  });
}

async function nodemailerSend(port: number, user: string, pass: string, method: string) {
  return nodemailer
    .createTransport({ host: "127.0.0.1", port, secure: false, requireTLS: true, tls: { rejectUnauthorized: false }, auth: { user, pass, method } })
    .sendMail({ from: user, to: "friend@elsewhere.test", subject: method, text: "hello" });
}

test("passwd-file: nodemailer CRAM-MD5 from a stored {CRAM-MD5} secret, swaks PLAIN against BLF-CRYPT, reload without restart", async () => {
  const dir = await mkdtemp(join(tmpdir(), "postern-pwfile-"));
  const path = join(dir, "users");
  await writeFile(path, [
    `john@example.org:${doveadmPw("CRAM-MD5", "john pass")}:1000:1000::/home/john::`,
    `mary@example.org:${doveadmPw("BLF-CRYPT", "mary pass")}::::::`,
  ].join("\n") + "\n");
  let server: Postern | undefined;
  try {
    server = await startPostern({ config: { ...relay(), auth: { backend: "passwd-file", path } } });
    const before = sink.messages.length;
    const info = await nodemailerSend(server.ports.submission, "john@example.org", "john pass", "CRAM-MD5");
    assert.match(info.response, /^250 2\.0\.0/);
    const out = await swaks(server.ports.submission, "PLAIN", "mary@example.org", "mary pass", "mary@example.org");
    assert.match(out, /235 2\.7\.0 Authentication successful/);
    assert.match(out, /250 2\.0\.0 Ok: queued as/);
    await sink.waitForMessages(before + 2);
    const wrong = await swaks(server.ports.submission, "PLAIN", "mary@example.org", "not it", "mary@example.org");
    assert.match(wrong, /535 5\.7\.8 Authentication credentials invalid/);

    // A user added to the file logs in at once: no restart.
    const reloads = server.logs.filter((l) => l.event === "passwd-file-loaded").length;
    await appendFile(path, `new@example.org:${doveadmPw("SHA512-CRYPT", "new pass")}\n`);
    await server.waitForLog(() => server!.logs.filter((l) => l.event === "passwd-file-loaded").length > reloads);
    const fresh = await swaks(server.ports.submission, "LOGIN", "new@example.org", "new pass", "new@example.org");
    assert.match(fresh, /235 2\.7\.0/);
  } finally {
    await server?.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
});

test("dovecot: mechanisms from Dovecot's handshake; SCRAM-SHA-256 passed through over STARTTLS; nodemailer PLAIN", async () => {
  const alice = { address: "alice@example.org", password: "alice in wonderland" };
  let dovecot: Daemon | undefined;
  let server: Postern | undefined;
  try {
    dovecot = await startDovecot([`${alice.address}:${doveadmPw("SCRAM-SHA-256", alice.password)}`]);
    server = await startPostern({ config: { ...relay(), auth: { backend: "dovecot", socket: `unix:${dovecot.socket}` } } });
    await server.waitForLog((l) => l.event === "auth-backend-ready");

    const c = await RawSmtp.open(server.ports.submission);
    await c.reply();
    await c.expect("EHLO client.test", 250);
    await c.expect("STARTTLS", 220);
    await c.upgradeTls();
    const ehlo = await c.expect("EHLO client.test", 250);
    // Dovecot's mechanisms, strongest first.
    assert.match(ehlo.text, /^250[ -]AUTH SCRAM-SHA-256 PLAIN LOGIN$/m);
    const scram = new ScramSha256Client({ username: alice.address, password: alice.password });
    let r = await c.cmd(`AUTH SCRAM-SHA-256 ${scram.initial().toString("base64")}`);
    while (r.code === 334) {
      // Our client verifies Dovecot's server signature (throws if it is wrong).
      const answer = scram.respond(Buffer.from(r.lines[0]!.slice(4), "base64"));
      r = await c.cmd(answer.toString("base64"));
    }
    assert.equal(r.code, 235, r.text);
    await c.expect(`MAIL FROM:<${alice.address}>`, 250);
    await c.expect("QUIT", 221);

    const info = await nodemailerSend(server.ports.submission, alice.address, alice.password, "PLAIN");
    assert.match(info.response, /^250 2\.0\.0/);
    await assert.rejects(nodemailerSend(server.ports.submission, alice.address, "wrong", "PLAIN"), /535/);
  } finally {
    await server?.cleanup();
    await dovecot?.stop();
  }
});

test("saslauthd: swaks AUTH LOGIN and PLAIN over STARTTLS for a system user; only PLAIN and LOGIN offered", async () => {
  const password = "Sys-user pass 9";
  const user = createSystemUser(password);
  let saslauthd: Daemon | undefined;
  let server: Postern | undefined;
  try {
    saslauthd = await startSaslauthd();
    server = await startPostern({ config: { ...relay(), auth: { backend: "saslauthd", socket: saslauthd.socket, service: "smtp" } } });
    const before = sink.messages.length;
    // A bare system login owns <login>@<first local domain> for the sender check.
    const out = await swaks(server.ports.submission, "LOGIN", user.name, password, `${user.name}@example.org`);
    assert.match(out, /AUTH PLAIN LOGIN\r?\n/);
    assert.match(out, /235 2\.7\.0 Authentication successful/);
    assert.match(out, /250 2\.0\.0 Ok: queued as/);
    await sink.waitForMessages(before + 1);
    const plain = await swaks(server.ports.submission, "PLAIN", user.name, password, `${user.name}@example.org`);
    assert.match(plain, /235 2\.7\.0/);
    const wrong = await swaks(server.ports.submission, "PLAIN", user.name, "wrong", `${user.name}@example.org`);
    assert.match(wrong, /535 5\.7\.8/);
    const spoof = await swaks(server.ports.submission, "PLAIN", user.name, password, "root@example.org");
    assert.match(spoof, /553 5\.7\.1/);
  } finally {
    await server?.cleanup();
    await saslauthd?.stop();
    user.remove();
  }
});
