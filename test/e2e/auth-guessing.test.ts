/**
 * Acceptance (issue 5, SECURITY.md rules 13–14): 20 wrong passwords from one IP end in 454/421
 * refusals, the right password from a second address still works, and the time to answer a
 * failed AUTH does not tell whether the user exists (docs/SECURITY.md 11.5), nor does a SCRAM salt
 * (11.4); IPv6 clients are counted per /64 (11.8).
 *
 * 127.0.0.1 and 127.0.0.2 are both loopback; `ipv4Prefix: 32` makes each its own "network block"
 * here, standing in for an attacker and the real user on different networks.
 */
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import nodemailer from "nodemailer";
import type SMTPTransport from "nodemailer/lib/smtp-transport/index.js";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LISTENER_MODES } from "../../src/base/listener-mode.js";
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
  assert.ok(
    codes.every((code) => code === 535 || code === 454),
    codes.join(" "),
  );
  assert.equal(closes, 6);
  // The account lockout (5 failures from this block) and the IP lockout (10) are each logged once.
  await server.waitForLog((l) => l.event === "auth-throttled" && l.scope === "ip");
  const throttled = server.logs.filter((l) => l.event === "auth-throttled");
  assert.deepEqual(
    throttled.map((l) => [l.scope, l.ip]),
    [
      ["account", "127.0.0.1"],
      ["ip", "127.0.0.1"],
    ],
  );

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

/** An implicit-TLS connection from `localAddress` past EHLO, ready to time one AUTH. */
async function openForTiming(port: number, localAddress: string): Promise<{ time(line: string): Promise<{ ms: number; reply: string }>; close(): void }> {
  const tcp = netConnect({ host: "127.0.0.1", port, localAddress });
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
  return {
    async time(line) {
      const started = process.hrtime.bigint();
      socket.write(`${line}\r\n`);
      const reply = await waitFor(/^\d{3} .*\r\n/m);
      return { ms: Number(process.hrtime.bigint() - started) / 1e6, reply: reply.trim() };
    },
    close: () => socket.destroy(),
  };
}

/**
 * docs/SECURITY.md 11.5: every failed AUTH is answered at one deadline from the AUTH, whatever the
 * check cost. Four kinds of failure cost very different work: a known SQLite user (scrypt), an
 * unknown one (a dummy scrypt), a known passwd-file user with a bcrypt hash (cost 12, ~250 ms), and
 * an unknown passwd-file user (the file's first entry is {PLAIN}, so no hash at all).
 *
 * Robust on a loaded machine: the server's own log says, per failure, what the check cost
 * (`checkMs`) and what it then waited (`waitMs`); the two must add up to the deadline exactly,
 * whatever the load (the old code waited the whole delay after the check, and logged neither).
 * On the client side, a reply is never early, and where the server's log shows every check of a
 * round finished in time, the four replies (sent together on four connections, so load hits them
 * alike) come back within a tenth of the deadline of each other.
 */
describe("one deadline for every failed AUTH", () => {
  const DEADLINE_MS = 2500;
  let timed: Postern;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-timing-"));
    const passwd = join(dir, "users");
    await writeFile(
      passwd,
      [
        `fast@example.net:{PLAIN}fast password::::::`, // first entry: the decoy for unknown users costs nothing
        `slow@example.net:${execFileSync("doveadm", ["pw", "-s", "BLF-CRYPT", "-r", "12", "-p", "slow password"], { encoding: "utf8" }).trim()}::::::`,
        `scram@example.net:${execFileSync("doveadm", ["pw", "-s", "SCRAM-SHA-256", "-p", "scram password"], { encoding: "utf8" }).trim()}::::::`,
      ].join("\n") + "\n",
    );
    timed = await startPostern({
      users: [JOHN],
      config: {
        limits: { authFailureDelayMs: DEADLINE_MS, authFailures: 3 },
        // Not the guessing defence under test here: no lockout, no growing penalty.
        auth: { domains: { "example.net": { backend: "passwd-file", path: passwd } }, throttle: { ipFailures: 1000, accountFailures: 1000, penaltyBaseMs: 0 } },
      },
    });
  });
  after(async () => {
    await timed?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  test("a failed AUTH takes as long for an unknown user as for a known one (no oracle), hashed or not (11.5)", async (t) => {
    const series = [
      { name: "known, scrypt", user: JOHN.address },
      { name: "unknown, dummy scrypt", user: "nobody@example.org" },
      { name: "known, bcrypt", user: "slow@example.net" },
      { name: "unknown, no hash", user: "nobody@example.net" },
    ].map((x, i) => ({ ...x, from: `127.0.0.${10 + i}` }));
    const rounds: { ms: number; checkMs: number; waitMs: number }[][] = [];
    for (let round = 0; round < 4; round++) {
      const conns = await Promise.all(series.map((x) => openForTiming(timed.ports.submissions, x.from)));
      const results = await Promise.all(series.map((x, i) => conns[i]!.time(`AUTH PLAIN ${b64(`\0${x.user}\0wrong password ${round}`)}`)));
      for (const c of conns) c.close();
      rounds.push(
        await Promise.all(
          results.map(async (r, i) => {
            assert.equal(r.reply, "535 5.7.8 Authentication credentials invalid", series[i]!.name);
            // The server's record of this failure: the round-th from that address.
            const failure = () => timed.logs.filter((l) => l.event === "auth-failure" && l.client === series[i]!.from)[round];
            await timed.waitForLog(() => failure() !== undefined);
            const { checkMs, waitMs } = failure() as { checkMs?: number; waitMs?: number };
            assert.ok(typeof checkMs === "number" && typeof waitMs === "number", "the server logs what the check cost and what it waited");
            return { ms: r.ms, checkMs, waitMs };
          }),
        ),
      );
    }
    const report = series.map((x, i) => `${x.name}: ${rounds.map((r) => `${r[i]!.ms.toFixed(0)} (check ${r[i]!.checkMs})`).join(", ")}`).join("; ");
    t.diagnostic(report);
    for (const round of rounds) {
      for (const [i, r] of round.entries()) {
        // Server side, exact: the wait is what the check left of the deadline (nothing when it took longer).
        assert.ok(Math.abs(r.waitMs - Math.max(0, DEADLINE_MS - r.checkMs)) <= 1, `${series[i]!.name}: check ${r.checkMs} + wait ${r.waitMs} ms (${report})`);
        // Client side: never early.
        assert.ok(r.ms >= DEADLINE_MS - 5, `${series[i]!.name}: ${r.ms} ms (${report})`);
      }
    }
    // Client side, in the rounds where every check fit in the deadline: the replies came together.
    const inTime = rounds.filter((round) => round.every((r) => r.checkMs < DEADLINE_MS * 0.8));
    for (const round of inTime) {
      const spread = Math.max(...round.map((r) => r.ms)) - Math.min(...round.map((r) => r.ms));
      assert.ok(spread < DEADLINE_MS * 0.1, `replies ${spread.toFixed(0)} ms apart (${report})`);
    }
    if (inTime.length === 0)
      t.diagnostic("every round had a check near the deadline (a very busy machine): only the server-side and never-early checks applied");
  });

  test("SCRAM through the real server: an unknown login's salt and iteration count behave as a known one's (11.4)", async () => {
    /** The server-first for `login`, then "*" (counted, not delayed). */
    const serverFirst = async (login: string): Promise<{ s: string; i: string }> => {
      const c = await RawSmtp.open(timed.ports.submissions, { tls: true });
      await c.reply();
      await c.expect("EHLO scram.test", 250);
      const r = await c.cmd(`AUTH SCRAM-SHA-256 ${b64(`n,,n=${login},r=clientnonce`)}`);
      assert.equal(r.code, 334, r.text);
      const text = Buffer.from(r.text.slice(4), "base64").toString();
      assert.equal((await c.cmd("*")).code, 501);
      c.close();
      return { s: /,s=([^,]+)/.exec(text)![1]!, i: /,i=(\d+)/.exec(text)![1]! };
    };
    for (const [known, unknown] of [
      [JOHN.address, "nobody@example.org"],
      ["scram@example.net", "nobody@example.net"],
    ] as const) {
      const spellings = (login: string) => [login, login.toUpperCase(), `  ${login}  `];
      const knownParams = await Promise.all(spellings(known).map(serverFirst));
      const unknownParams = await Promise.all(spellings(unknown).map(serverFirst));
      assert.equal(new Set(knownParams.map((p) => p.s)).size, 1, `${known}: one salt`);
      assert.equal(new Set(unknownParams.map((p) => p.s)).size, 1, `${unknown}: one salt for every spelling, as a known login has`);
      assert.equal(unknownParams[0]!.i, knownParams[0]!.i, "the same iteration count");
      assert.equal(Buffer.from(unknownParams[0]!.s, "base64").length, Buffer.from(knownParams[0]!.s, "base64").length, "the same salt length");
    }
  });
});

/**
 * docs/SECURITY.md 11.8: an IPv6 client owns (at least) a /64 and can rotate through it at will,
 * so limits per IP count per /64. Over PROXY protocol from 127.0.0.1 the test claims IPv6 clients.
 */
describe("IPv6 clients counted per /64 (PROXY protocol)", () => {
  let proxied: Postern;
  before(async () => {
    proxied = await startPostern({
      users: [JOHN],
      config: {
        trustedProxies: ["127.0.0.1"],
        listeners: LISTENER_MODES.map((mode) => ({ address: "127.0.0.1", port: 0, mode, proxyProtocol: true })),
        limits: { authFailureDelayMs: 10, connections: { perIp: 2 } },
        auth: { throttle: { ipFailures: 3, accountFailures: 100, penaltyBaseMs: 0 } },
      },
    });
  });
  after(async () => {
    await proxied?.cleanup();
  });
  const from = (ip: string) => RawSmtp.open(proxied.ports.submissions, { prelude: `PROXY TCP6 ${ip} 2001:db8::25 40000 465\r\n`, tls: true });

  test("AUTH failures from rotating addresses of one /64 lock the /64 out; the next /64 is not affected", async () => {
    for (const ip of ["2001:db8:1:2::a", "2001:db8:1:2:ffff::b", "2001:db8:1:2:1:2:3:4"]) {
      const c = await from(ip);
      await c.reply();
      await c.expect("EHLO rotating.test", 250);
      assert.equal((await c.cmd(`AUTH PLAIN ${b64(`\0${JOHN.address}\0guess`)}`)).code, 535);
      c.close();
    }
    const next = await from("2001:db8:1:2:dead:beef:cafe:1");
    await next.reply();
    await next.expect("EHLO rotating.test", 250);
    assert.equal((await next.cmd(`AUTH PLAIN ${b64(`\0${JOHN.address}\0${JOHN.password}`)}`)).text, "454 4.7.0 Temporary authentication failure");
    next.close();
    const throttled = await proxied.waitForLog((l) => l.event === "auth-throttled" && l.scope === "ip");
    assert.equal(throttled.ip, "2001:db8:1:2:1:2:3:4", "logged with the address that tipped it");

    const neighbour = await from("2001:db8:1:3::a");
    await neighbour.reply();
    await neighbour.expect("EHLO neighbour.test", 250);
    assert.equal((await neighbour.cmd(`AUTH PLAIN ${b64(`\0${JOHN.address}\0${JOHN.password}`)}`)).code, 235);
    neighbour.close();
  });

  test("connections per IP count the /64: a third address of the /64 gets 421 4.7.0 while two are open", async () => {
    const open: RawSmtp[] = [];
    for (const ip of ["2001:db8:7:7::1", "2001:db8:7:7::2"]) {
      const c = await from(ip);
      assert.equal((await c.reply()).code, 220);
      open.push(c);
    }
    const third = await from("2001:db8:7:7:abcd::3");
    assert.match((await third.reply()).text, /^421 4\.7\.0 .*too many connections from your IP address/);
    await third.waitClosed();
    const other = await from("2001:db8:7:8::1");
    assert.equal((await other.reply()).code, 220, "another /64 gets in");
    for (const c of [...open, other]) c.close();
    await proxied.waitForLog((l) => l.event === "connection-refused" && l.client === "2001:db8:7:7:abcd::3");
  });
});
