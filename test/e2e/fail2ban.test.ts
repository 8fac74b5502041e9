/**
 * The fail2ban filter in contrib/ matches Postern's real log lines: failed AUTHs (wrong password
 * and unknown user) and throttle lock-outs, with the client's IP; successes and backend outages
 * do not match. Run with Debian's `fail2ban-regex`.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, startPostern, type Postern } from "./helpers/postern.js";
import { RawSmtp, b64 } from "./helpers/raw-smtp.js";

const JOHN = { address: "john@example.org", password: "correct horse battery staple" };
let server: Postern | undefined;
after(async () => {
  await server?.cleanup();
});

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

  // The log exactly as Postern wrote it (pino keeps key order; the helper parsed each line).
  const dir = await mkdtemp(join(tmpdir(), "postern-f2b-"));
  try {
    const logPath = join(dir, "postern.log");
    const logged = [...server.logs]; // a snapshot: the server may still be logging
    await writeFile(logPath, logged.map((l) => JSON.stringify(l)).join("\n") + "\n");
    const filter = join(ROOT, "contrib/fail2ban/filter.d/postern.conf");
    const out = await new Promise<string>((resolve, reject) =>
      execFile("fail2ban-regex", ["--print-all-matched", "--print-no-missed", logPath, filter], (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const failures = logged.filter((l) => l.event === "auth-failure").length;
    assert.equal(failures, 3);
    // 3 failures + 1 lock-out, all from 127.0.0.1; the success and the other lines are not matched.
    assert.match(out, /Failregex: 4 total/, out);
    assert.match(out, /1\) \[3\] .*"event":"auth-failure"/, "the auth-failure expression: 3 hits");
    assert.match(out, /2\) \[1\] .*"event":"auth-throttled"/, "the lock-out expression: 1 hit");
    const matched = out.split("\n").filter((l) => /^\|\s+\{/.test(l));
    assert.equal(matched.length, 4, out);
    for (const line of matched) assert.match(line, /"client":"127\.0\.0\.1"/);
    const lines = logged.length;
    assert.match(out, new RegExp(`\\[${lines}\\] "time":"Year-Month-Day`), "every line's date is understood");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
