/**
 * The fail2ban filter in contrib/ matches Postern's real log lines: failed AUTHs (wrong password
 * and unknown user), failed web logins, and throttle lock-outs, with the client's IP; successes and
 * backend outages do not match. Run with Debian's `fail2ban-regex`.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, startPostern, type Postern } from "./helpers/postern.js";
import { RawSmtp, b64 } from "./helpers/raw-smtp.js";
import { login as webLogin } from "../web/helpers/web-client.js";

const JOHN = { address: "john@example.org", password: "correct horse battery staple" };
let server: Postern | undefined;
let webServer: Postern | undefined;
after(async () => {
  await server?.cleanup();
  await webServer?.cleanup();
});

/** fail2ban-regex over these log lines, as Postern wrote them (pino keeps key order). */
async function fail2banRegex(logged: Record<string, unknown>[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "postern-f2b-"));
  try {
    const logPath = join(dir, "postern.log");
    await writeFile(logPath, logged.map((l) => JSON.stringify(l)).join("\n") + "\n");
    const filter = join(ROOT, "contrib/fail2ban/filter.d/postern.conf");
    return await new Promise<string>((resolve, reject) =>
      execFile("fail2ban-regex", ["--print-all-matched", "--print-no-missed", logPath, filter], (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The log lines fail2ban-regex printed as matched. */
const matchedLines = (out: string) => out.split("\n").filter((l) => /^\|\s+\{/.test(l));

test("fail2ban-regex finds every failed AUTH and the lock-out in Postern's JSON log, with the client IP", async () => {
  server = await startPostern({
    users: [JOHN],
    config: { auth: { throttle: { ipFailures: 3, penaltyBaseMs: 0 } } },
  });
  const c = await RawSmtp.open(server.ports.submissions, { tls: true });
  await c.reply();
  await c.expect("EHLO client.test", 250);
  await c.expect(`AUTH PLAIN ${b64(`\0${JOHN.address}\0${JOHN.password}`)}`, 235); // must not match
  c.close();
  const d = await RawSmtp.open(server.ports.submissions, { tls: true });
  await d.reply();
  await d.expect("EHLO client.test", 250);
  await d.expect(`AUTH PLAIN ${b64(`\0${JOHN.address}\0wrong`)}`, 535);
  await d.expect(`AUTH PLAIN ${b64(`\0nobody@example.org\0wrong`)}`, 535);
  await d.expect(`AUTH PLAIN ${b64(`\0${JOHN.address}\0wrong again`)}`, 535);
  await server.waitForLog((l) => l.event === "auth-throttled");
  // The third failure's own line may follow the lock-out it caused: wait for all three.
  await server.waitForLog(() => server!.logs.filter((l) => l.event === "auth-failure").length === 3);
  d.close();

  // The log exactly as Postern wrote it (the helper parsed each line).
  const logged = [...server.logs]; // a snapshot: the server may still be logging
  const out = await fail2banRegex(logged);
  const failures = logged.filter((l) => l.event === "auth-failure").length;
  assert.equal(failures, 3);
  // 3 failures + 1 lock-out, all from 127.0.0.1; the success and the other lines are not matched.
  assert.match(out, /Failregex: 4 total/, out);
  assert.match(out, /1\) \[3\] .*"event":"auth-failure"/, "the auth-failure expression: 3 hits");
  assert.match(out, /2\) \[1\] .*"event":"auth-throttled"/, "the lock-out expression: 1 hit");
  const matched = matchedLines(out);
  assert.equal(matched.length, 4, out);
  for (const line of matched) assert.match(line, /"client":"127\.0\.0\.1"/);
  const lines = logged.length;
  assert.match(out, new RegExp(`\\[${lines}\\] "time":"Year-Month-Day`), "every line's date is understood");
});

test("fail2ban-regex finds failed web logins and the web lock-out, with the client IP; an address cannot forge the host", async () => {
  webServer = await startPostern({
    users: [JOHN],
    config: { web: { address: "127.0.0.1", port: 0 }, auth: { throttle: { accountFailures: 2, ipFailures: 50, penaltyBaseMs: 0 } } },
  });
  const port = (await webServer.waitForLog((l) => l.event === "web-listening")).port as number;
  assert.equal((await webLogin(port, JOHN.address, JOHN.password)).reply.status, 303); // must not match
  // An address that tries to plant another host (and reason) into the JSON line.
  const forged = 'x","reason":"bad-password","ip":"10.9.9.9@example.org';
  assert.equal((await webLogin(port, forged, "wrong")).reply.status, 401);
  assert.equal((await webLogin(port, JOHN.address, "wrong")).reply.status, 401);
  assert.equal((await webLogin(port, JOHN.address, "wrong again")).reply.status, 401); // the account's 2nd: locked out
  assert.equal((await webLogin(port, JOHN.address, JOHN.password)).reply.status, 429); // refused, not a guess: no match
  await webServer.waitForLog((l) => l.event === "auth-throttled" && l.via === "web");
  // The refused login's own line may follow its 429: wait for it too.
  await webServer.waitForLog((l) => l.event === "web-login-failure" && l.reason === "backend-error");

  const logged = [...webServer.logs];
  // The refused login is logged too (reason backend-error, as SMTP AUTH's 454): not a guess.
  const webFailures = logged.filter((l) => l.event === "web-login-failure");
  assert.deepEqual(
    webFailures.map((l) => l.reason),
    ["unknown-user", "bad-password", "bad-password", "backend-error"],
  );
  const out = await fail2banRegex(logged);
  // 3 failed logins + 1 lock-out; the successful login and the refused one are not matched.
  assert.match(out, /Failregex: 4 total/, out);
  assert.match(out, /3\) \[3\] .*"event":"web-login-failure"/, "the web-login-failure expression: 3 hits");
  assert.match(out, /4\) \[1\] .*"event":"auth-throttled"/, "the web lock-out expression: 1 hit");
  const matched = matchedLines(out);
  assert.equal(matched.length, 4, out);
  for (const line of matched) assert.match(line, /"ip":"127\.0\.0\.1"/);
  assert.doesNotMatch(out, /10\.9\.9\.9 /, "the forged address never becomes a host");
});
