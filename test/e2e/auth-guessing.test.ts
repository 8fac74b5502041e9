/**
 * Acceptance (issue 5, SECURITY.md rules 13–14): 20 wrong passwords from one IP end in 454/421
 * refusals, the right password from a second address still works, and the time to answer a
 * failed AUTH does not tell whether the user exists.
 *
 * 127.0.0.1 and 127.0.0.2 are both loopback; `ipv4Prefix: 32` makes each its own "network block"
 * here, standing in for an attacker and the real user on different networks.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import nodemailer from "nodemailer";
import type SMTPTransport from "nodemailer/lib/smtp-transport/index.js";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { startPostern, type Postern } from "./helpers/postern.js";
import { RawSmtp, b64 } from "./helpers/raw-smtp.js";

const JOHN = { address: "john@example.org", password: "correct horse battery staple" };
const DELAY_MS = 300;
let server: Postern;

before(async () => {
  server = await startPostern({
    users: [JOHN],
    config: {
      limits: { authFailureDelayMs: DELAY_MS, authFailures: 3 },
      auth: { throttle: { ipFailures: 10, accountFailures: 5, lockoutSec: 600, penaltyBaseMs: 0, ipv4Prefix: 32 } },
    },
  });
});
after(async () => {
  await server?.cleanup();
});

/** One implicit-TLS connection from 127.0.0.1 (RawSmtp's source address). */
const openFrom = (_source: "127.0.0.1"): Promise<RawSmtp> => RawSmtp.open(server.ports.submissions, { tls: true });

test("20 wrong passwords from one IP: 535 first, then 454 4.7.0; each connection closed with 421 after 3 failures", async () => {
  const codes: number[] = [];
  let closes = 0;
  while (codes.length < 20) {
    const c = await openFrom("127.0.0.1");
    await c.reply();
    await c.expect("EHLO attacker.test", 250);
    for (let i = 0; i < 3 && codes.length < 20; i++) {
      codes.push((await c.cmd(`AUTH PLAIN ${b64(`\0${JOHN.address}\0guess-${codes.length}`)}`)).code);
    }
    if (codes.length % 3 === 0) {
      // RFC 4954 §4: after the 3rd failure on a connection the server says 421 and closes.
      assert.match((await c.reply()).text, /^421 4\.7\.0 .*too many authentication failures/);
      await c.waitClosed();
      closes++;
    }
    c.close();
  }
  assert.deepEqual(codes.slice(0, 5), Array(5).fill(535), "the first failures are ordinary 535s");
  assert.deepEqual(codes.slice(10), Array(10).fill(454), "past the limits: 454 4.7.0 Temporary authentication failure");
  assert.ok(codes.every((code) => code === 535 || code === 454), codes.join(" "));
  assert.equal(closes, 6);
  // The account lockout (5 failures from this block) and the IP lockout (10) are each logged once.
  await server.waitForLog((l) => l.event === "auth-throttled" && l.scope === "ip");
  const throttled = server.logs.filter((l) => l.event === "auth-throttled");
  assert.deepEqual(throttled.map((l) => [l.scope, l.ip]), [["account", "127.0.0.1"], ["ip", "127.0.0.1"]]);

  // Even the right password is refused from the locked-out address...
  const again = await openFrom("127.0.0.1");
  await again.reply();
  await again.expect("EHLO attacker.test", 250);
  const refused = await again.cmd(`AUTH PLAIN ${b64(`\0${JOHN.address}\0${JOHN.password}`)}`);
  assert.equal(refused.text, "454 4.7.0 Temporary authentication failure");
  again.close();

  // ...but the real user, from another address, logs in and sends.
  const options = {
    host: "127.0.0.1",
    port: server.ports.submission,
    localAddress: "127.0.0.2", // nodemailer's SMTP option (missing from @types/nodemailer)
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user: JOHN.address, pass: JOHN.password },
  };
  const info = await nodemailer
    .createTransport(options as SMTPTransport.Options)
    .sendMail({ from: JOHN.address, to: JOHN.address, subject: "still works", text: "from 127.0.0.2" });
  assert.match(info.response, /^250 2\.0\.0/);
  await server.waitForLog((l) => l.event === "auth-success" && l.client === "127.0.0.2");
});

/** Sends AUTH PLAIN on a fresh connection from 127.0.0.3 and times the failure reply. */
async function timeFailure(user: string): Promise<number> {
  const tcp = netConnect({ host: "127.0.0.1", port: server.ports.submissions, localAddress: "127.0.0.3" });
  const socket = tlsConnect({ socket: tcp, rejectUnauthorized: false });
  let buffer = "";
  const waitFor = (re: RegExp) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const m = re.exec(buffer);
        if (m) {
          socket.off("data", onData);
          buffer = buffer.slice(m.index + m[0].length);
          resolve(m[0]);
        }
      };
      const onData = (d: Buffer) => ((buffer += d.toString()), check());
      socket.on("data", onData);
      socket.once("error", reject);
      check();
    });
  await waitFor(/^220 .*\r\n/m);
  socket.write("EHLO timing.test\r\n");
  await waitFor(/^250 .*\r\n/m);
  const started = process.hrtime.bigint();
  socket.write(`AUTH PLAIN ${b64(`\0${user}\0wrong password`)}\r\n`);
  const line = await waitFor(/^\d{3} .*\r\n/m);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  socket.destroy();
  assert.match(line, /^535 5\.7\.8 Authentication credentials invalid/);
  return ms;
}

test("a failed AUTH takes as long for an unknown user as for a known one (no oracle)", async () => {
  const known: number[] = [];
  const unknown: number[] = [];
  for (let i = 0; i < 4; i++) {
    known.push(await timeFailure(JOHN.address));
    unknown.push(await timeFailure(`nobody${i}@example.org`));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const ms of [...known, ...unknown]) assert.ok(ms >= DELAY_MS, `every failure waits the delay (${ms} ms)`);
  // Both pay one scrypt (a dummy hash for the unknown user) plus the same delay. The fastest of each
  // series is compared: noise from a busy machine only ever adds time, so the minimum shows the cost
  // of the code path itself.
  const fastest = (xs: number[]) => Math.min(...xs);
  const diff = Math.abs(fastest(known) - fastest(unknown));
  assert.ok(
    diff < DELAY_MS * 0.25,
    `fastest known ${fastest(known).toFixed(0)} ms vs unknown ${fastest(unknown).toFixed(0)} ms ` +
      `(medians ${median(known).toFixed(0)} / ${median(unknown).toFixed(0)} ms)`,
  );
});
