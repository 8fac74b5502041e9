/**
 * App passwords through the real server and the real CLI: a phone's own password submits mail,
 * its revocation while the server runs bites at the next AUTH, and a user who requires app
 * passwords is refused with the main password (535) with the reason in the log.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import nodemailer from "nodemailer";
import { execFile } from "node:child_process";
import { BIN, ROOT, runCli, startPostern, type Postern } from "./helpers/postern.js";
import { authPlainCode, b64, RawSmtp } from "./helpers/raw-smtp.js";
import { startSink, type Sink } from "../delivery/helpers/sink.js";

const JOHN = { address: "john@example.org", password: "john's main password" };
const STRICT = { address: "strict@example.org", password: "strict's main password" };
let server: Postern;
let sink: Sink;

before(async () => {
  sink = await startSink({});
  server = await startPostern({ users: [JOHN, STRICT], config: { relay: { smarthost: `127.0.0.1:${sink.port}` } } });
  const r = await runCli(["user", "require-app-passwords", STRICT.address, "on", "--config", server.configPath]);
  assert.equal(r.code, 0, r.stderr);
});
after(async () => {
  await server?.cleanup();
  await sink?.close();
});

async function addAppPassword(address: string, name: string): Promise<string> {
  const r = await runCli(["user", "app-password", "add", address, "--name", name, "--config", server.configPath]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split("\n");
  assert.equal(lines.length, 2, "the password alone on its own line");
  assert.match(lines[0]!, /^[a-z0-9]{4}(-[a-z0-9]{4}){4}$/);
  assert.match(r.stderr, /shown only this once/);
  return lines[0]!;
}

/** AUTH PLAIN on 465 (implicit TLS): the reply code. */
const authPlain = (login: string, password: string) => authPlainCode(server.ports.submissions, login, password);

test("a phone's app password submits mail with nodemailer; the log names the credential, never its value", async () => {
  const phone = await addAppPassword(JOHN.address, "phone");
  const before = sink.messages.length;
  const transport = nodemailer.createTransport({
    host: "127.0.0.1",
    port: server.ports.submission,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user: JOHN.address, pass: phone, method: "PLAIN" },
  });
  const info = await transport.sendMail({ from: JOHN.address, to: "friend@elsewhere.test", subject: "from my phone", text: "hi" });
  assert.match(info.response, /^250 /);
  await sink.waitForMessages(before + 1);
  const success = await server.waitForLog((l) => l.event === "auth-success" && l.credential === "phone");
  assert.equal(success.user, JOHN.address);
  const compact = phone.replaceAll("-", "");
  assert.ok(!server.logs.some((l) => JSON.stringify(l).includes(phone) || JSON.stringify(l).includes(compact)), "the value never logged");

  // LOGIN, typed without dashes and in capitals, as a phone keyboard might.
  const c = await RawSmtp.open(server.ports.submissions, { tls: true });
  await c.reply();
  await c.expect("EHLO phone.test", 250);
  await c.expect("AUTH LOGIN", 334);
  await c.expect(b64(JOHN.address), 334);
  assert.equal((await c.cmd(b64(compact.toUpperCase()))).code, 235);
  c.close();
});

test("revoked while the server runs: the next AUTH fails at once; the other device and the main password go on", async () => {
  const tablet = await addAppPassword(JOHN.address, "tablet");
  const laptop = await addAppPassword(JOHN.address, "laptop");
  assert.equal(await authPlain(JOHN.address, tablet), 235);
  assert.equal(await authPlain(JOHN.address, tablet), 235, "now in the server's credential cache");
  const r = await runCli(["user", "app-password", "revoke", JOHN.address, "tablet", "--config", server.configPath]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await authPlain(JOHN.address, tablet), 535);
  const failure = await server.waitForLog((l) => l.event === "auth-failure" && l.reason === "bad-password" && l.detail === undefined);
  assert.equal(failure.mechanism, "PLAIN");
  assert.equal(await authPlain(JOHN.address, laptop), 235);
  assert.equal(await authPlain(JOHN.address, JOHN.password), 235);
  const again = await runCli(["user", "app-password", "revoke", JOHN.address, "tablet", "--config", server.configPath]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /no app password named "tablet"/);
});

test("requireAppPasswords: the main password is refused with 535 and the log says why; an app password works", async () => {
  assert.equal(await authPlain(STRICT.address, STRICT.password), 535);
  const refused = await server.waitForLog((l) => l.event === "auth-failure" && l.reason === "app-password-required");
  assert.equal(refused.mechanism, "PLAIN");
  const phone = await addAppPassword(STRICT.address, "phone");
  assert.equal(await authPlain(STRICT.address, phone), 235);
  // The app password's own line first: lines arrive in order, so a refusal of that login would be in by then.
  await server.waitForLog((l) => l.event === "auth-success" && l.user === STRICT.address && l.credential === "phone");
  const refusals = server.logs.filter((l) => l.event === "auth-failure" && l.reason === "app-password-required");
  assert.equal(refusals.length, 1, "the app password's login is not refused");
});

test("list shows name, created, last used and from where", async () => {
  const ci = await addAppPassword(JOHN.address, "ci job");
  assert.equal(await authPlain(JOHN.address, ci), 235);
  const r = await runCli(["user", "app-password", "list", JOHN.address, "--config", server.configPath]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^ci job {2}created \S+ {2}last used \S+ from 127\.0\.0\.1$/m);
  assert.doesNotMatch(r.stdout, /^tablet/m, "revoked ones are gone");
  const json = await runCli(["user", "app-password", "list", JOHN.address, "--json", "--config", server.configPath]);
  const parsed = JSON.parse(json.stdout) as { requireAppPasswords: boolean; appPasswords: { name: string; lastUsedIp: string | null }[] };
  assert.equal(parsed.requireAppPasswords, false);
  assert.equal(parsed.appPasswords.find((p) => p.name === "ci job")?.lastUsedIp, "127.0.0.1");
});

/** `postern send` on 465 with a mechanism, the password from the environment: exit code and transcript. */
function posternSend(mechanism: string, login: string, password: string): Promise<{ code: number; out: string }> {
  const args = ["send", "--server", `127.0.0.1:${server.ports.submissions}`, "--tls", "implicit", "--insecure", "--ehlo", "laptop.test"];
  args.push("--from", login, "--to", "friend@elsewhere.test", "--user", login, "--auth", mechanism, "--subject", mechanism);
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, POSTERN_PASSWORD: password } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
    child.stdin?.end();
  });
}

test("SCRAM-SHA-256 and CRAM-MD5 with an app password: sent, named in the log, last use recorded; the main password refused for a strict user", async () => {
  const laptop = await addAppPassword(STRICT.address, "laptop");
  for (const mechanism of ["SCRAM-SHA-256", "CRAM-MD5"]) {
    const sent = await posternSend(mechanism, STRICT.address, laptop);
    assert.equal(sent.code, 0, sent.out);
    assert.match(sent.out, /<- 235 2\.7\.0/);
    const ok = await server.waitForLog((l) => l.event === "auth-success" && l.mechanism === mechanism && l.credential === "laptop");
    assert.equal(ok.user, STRICT.address);
    const refused = await posternSend(mechanism, STRICT.address, STRICT.password);
    assert.notEqual(refused.code, 0);
    assert.match(refused.out, /<- 535 5\.7\.8/);
    await server.waitForLog((l) => l.event === "auth-failure" && l.mechanism === mechanism && l.reason === "app-password-required");
  }
  // nodemailer's own CRAM-MD5, the password typed without dashes.
  const transport = nodemailer.createTransport({
    host: "127.0.0.1",
    port: server.ports.submission,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user: STRICT.address, pass: laptop.replaceAll("-", ""), method: "CRAM-MD5" },
  });
  const info = await transport.sendMail({ from: STRICT.address, to: "friend@elsewhere.test", subject: "cram", text: "hi" });
  assert.match(info.response, /^250 /);
  const listed = JSON.parse((await runCli(["user", "app-password", "list", STRICT.address, "--json", "--config", server.configPath])).stdout) as {
    appPasswords: { name: string; lastUsedIp: string | null }[];
  };
  assert.equal(listed.appPasswords.find((p) => p.name === "laptop")?.lastUsedIp, "127.0.0.1");
  // nodemailer's login is the 2nd CRAM-MD5 one with the laptop's password: with its line in, so are those before it.
  let cramLogins = 0;
  await server.waitForLog(
    (l) => l.event === "auth-success" && l.user === STRICT.address && l.mechanism === "CRAM-MD5" && l.credential === "laptop" && ++cramLogins === 2,
  );
  assert.ok(!server.logs.some((l) => JSON.stringify(l).includes(laptop)), "the value never logged");
});
