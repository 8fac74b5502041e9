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
      [
        "--server",
        `127.0.0.1:${port}`,
        "--tls",
        "--auth",
        auth,
        "--auth-user",
        user,
        "--auth-password",
        password,
        "--from",
        from,
        "--to",
        "friend@elsewhere.test",
        "--body",
        `via ${auth}`,
      ],
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
  await writeFile(
    path,
    [`john@example.org:${doveadmPw("CRAM-MD5", "john pass")}:1000:1000::/home/john::`, `mary@example.org:${doveadmPw("BLF-CRYPT", "mary pass")}::::::`].join(
      "\n",
    ) + "\n",
  );
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
    // The start's own load line first, so the count below cannot be short of a line still in the pipe.
    await server.waitForLog((l) => l.event === "passwd-file-loaded");
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

/** A client-first for `login` on a fresh STARTTLS session; the server-first, and how long it took. */
async function scramFirst(port: number, login: string, cnonce = "clientnonce"): Promise<{ c: RawSmtp; serverFirst: string; ms: number; code: number }> {
  const c = await RawSmtp.open(port);
  await c.reply();
  await c.expect("EHLO client.test", 250);
  await c.expect("STARTTLS", 220);
  await c.upgradeTls();
  await c.expect("EHLO client.test", 250);
  const started = performance.now();
  const r = await c.cmd(`AUTH SCRAM-SHA-256 ${Buffer.from(`n,,n=${login},r=${cnonce}`).toString("base64")}`);
  return { c, serverFirst: r.code === 334 ? Buffer.from(r.text.slice(4), "base64").toString() : r.text, ms: performance.now() - started, code: r.code };
}

test("dovecot: a SCRAM client-first is answered alike for known and unknown logins — salt stable per spelling Dovecot folds, Dovecot's shape, one hold time (11.4)", async () => {
  const alice = { address: "alice@example.org", password: "alice in wonderland" };
  const HOLD_MS = 2000;
  let dovecot: Daemon | undefined;
  let server: Postern | undefined;
  try {
    dovecot = await startDovecot([`${alice.address}:${doveadmPw("SCRAM-SHA-256", alice.password)}`]);
    server = await startPostern({
      config: {
        ...relay(),
        limits: { authFailureDelayMs: HOLD_MS },
        auth: { backend: "dovecot", socket: `unix:${dovecot.socket}`, scramHoldMs: HOLD_MS, throttle: { ipFailures: 1000, penaltyBaseMs: 0 } },
      },
    });
    await server.waitForLog((l) => l.event === "auth-backend-ready");
    const shape = (serverFirst: string) => {
      const m = /^r=clientnonce([^,]+),s=([^,]+),i=(\d+)$/.exec(serverFirst);
      assert.ok(m, serverFirst);
      return { nonceChars: m[1]!.length, salt: m[2]!, saltBytes: Buffer.from(m[2]!, "base64").length, i: m[3]! };
    };
    // Side by side (load hits all alike): two spellings of a known login, two of an unknown one.
    const logins = ["alice@example.org", "ALICE@Example.ORG", "nobody@example.org", "NOBODY@EXAMPLE.ORG"];
    const firsts = await Promise.all(logins.map((login) => scramFirst(server!.ports.submission, login)));
    const seen = await Promise.all(
      firsts.map(async ({ c, serverFirst, ms, code }, i) => {
        assert.equal(code, 334, `${logins[i]}: ${serverFirst}`);
        assert.equal((await c.cmd("*")).code, 501);
        c.close();
        const { salt, ...rest } = shape(serverFirst);
        assert.deepEqual(rest, { nonceChars: 64, saltBytes: 16, i: "4096" }, `${logins[i]}: Dovecot's shape`);
        assert.ok(ms >= HOLD_MS - 5, `${logins[i]}: the server-first waits for the hold (${ms.toFixed(0)} ms)`);
        return { salt, ms };
      }),
    );
    // Dovecot folds case (auth_username_format %Lu): alice and ALICE share a salt, and so must the
    // two spellings of the unknown login; the two logins do not.
    assert.equal(seen[0]!.salt, seen[1]!.salt);
    assert.equal(seen[2]!.salt, seen[3]!.salt, "an unknown login's fake salt folds like a real one");
    assert.notEqual(seen[0]!.salt, seen[2]!.salt);
    assert.equal(shape((await scramFirst(server.ports.submission, "nobody@example.org")).serverFirst).salt, seen[2]!.salt, "and stays the same");
    // A known login's real server-first and an unknown one's fake come at the same hold time.
    const spread = Math.max(...seen.map((x) => x.ms)) - Math.min(...seen.map((x) => x.ms));
    assert.ok(spread < HOLD_MS * 0.25, `server-firsts ${seen.map((x) => x.ms.toFixed(0)).join(", ")} ms`);

    // The whole exchange fails alike: a wrong password for alice, any password for nobody.
    await Promise.all(
      [alice.address, "nobody@example.org"].map(async (login) => {
        const { c, serverFirst } = await scramFirst(server!.ports.submission, login, "fixed");
        const final = `c=biws,r=${/^r=([^,]+)/.exec(serverFirst)![1]},p=${Buffer.alloc(32).toString("base64")}`;
        const r = await c.cmd(Buffer.from(final).toString("base64"));
        assert.equal(r.text, "535 5.7.8 Authentication credentials invalid", login);
        c.close();
      }),
    );
  } finally {
    await server?.cleanup();
    await dovecot?.stop();
  }
});

test("dovecot: failures count per account — PLAIN, LOGIN and SCRAM logins learned from the exchange; a locked-out account gets 454 from that network, another account does not (11.8)", async () => {
  const alice = { address: "alice@example.org", password: "alice in wonderland" };
  const bob = { address: "bob@example.org", password: "bob the builder" };
  let dovecot: Daemon | undefined;
  let server: Postern | undefined;
  try {
    dovecot = await startDovecot([
      `${alice.address}:${doveadmPw("SCRAM-SHA-256", alice.password)}`,
      `${bob.address}:${doveadmPw("SHA512-CRYPT", bob.password)}`,
    ]);
    server = await startPostern({
      config: {
        ...relay(),
        auth: { backend: "dovecot", socket: `unix:${dovecot.socket}`, scramHoldMs: 0, throttle: { ipFailures: 100, accountFailures: 3, penaltyBaseMs: 0 } },
      },
    });
    await server.waitForLog((l) => l.event === "auth-backend-ready");
    const session = async () => {
      const c = await RawSmtp.open(server!.ports.submission);
      await c.reply();
      await c.expect("EHLO client.test", 250);
      await c.expect("STARTTLS", 220);
      await c.upgradeTls();
      await c.expect("EHLO client.test", 250);
      return c;
    };
    const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
    // Three wrong guesses for alice, one per mechanism, spelled differently each time.
    const c = await session();
    assert.equal((await c.cmd(`AUTH PLAIN ${b64(`\0${alice.address}\0guess 1`)}`)).code, 535);
    assert.equal((await c.cmd("AUTH LOGIN")).code, 334);
    assert.equal((await c.cmd(b64("Alice@Example.org"))).code, 334);
    assert.equal((await c.cmd(b64("guess 2"))).code, 535);
    const scram = new ScramSha256Client({ username: "ALICE@example.org", password: "guess 3" });
    let r = await c.cmd(`AUTH SCRAM-SHA-256 ${scram.initial().toString("base64")}`);
    assert.equal(r.code, 334);
    r = await c.cmd(scram.respond(Buffer.from(r.text.slice(4), "base64")).toString("base64"));
    assert.equal(r.code, 535);
    c.close();
    const locked = await server.waitForLog((l) => l.event === "auth-throttled" && l.scope === "account");
    assert.equal(String(locked.user).toLowerCase(), alice.address);

    // Now even alice's right password is refused from this network, without asking Dovecot...
    const again = await session();
    assert.equal((await again.cmd(`AUTH PLAIN ${b64(`\0${alice.address}\0${alice.password}`)}`)).text, "454 4.7.0 Temporary authentication failure");
    assert.equal((await again.cmd("AUTH LOGIN")).code, 334);
    assert.equal((await again.cmd(b64(alice.address))).text, "454 4.7.0 Temporary authentication failure", "LOGIN: refused at the user name");
    // ...while another account from the same address logs in.
    assert.equal((await again.cmd(`AUTH PLAIN ${b64(`\0${bob.address}\0${bob.password}`)}`)).code, 235);
    again.close();
  } finally {
    await server?.cleanup();
    await dovecot?.stop();
  }
});
