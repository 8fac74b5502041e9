/**
 * Abuse limits on the real server (real sockets on 127.0.0.1): connection caps and rate (421 4.7.0),
 * commands before AUTH, the tarpit, per-command deadlines, the minimum DATA rate, the TLS handshake
 * deadline and the session lifetime (421 4.4.2) — and every limiter slot comes back on every path.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { RawSmtp } from "../e2e/helpers/raw-smtp.js";
import { startTestServer } from "./helpers.js";

async function greeted(port: number): Promise<RawSmtp> {
  const c = await RawSmtp.open(port);
  const r = await c.reply();
  assert.equal(r.code, 220, r.text);
  return c;
}

test("per-IP connection limit: the next connection gets 421 4.7.0 and is closed; slots come back after QUIT", async () => {
  const t = await startTestServer({ limits: { connections: { perIp: 2 } } });
  try {
    const a = await greeted(t.ports.mta);
    const b = await greeted(t.ports.submission);
    const c = await RawSmtp.open(t.ports.mta);
    assert.match((await c.reply()).text, /^421 4\.7\.0 mail\.example\.org Error: too many connections from your IP address/);
    await c.waitClosed();
    await t.waitForLog((l) => l.event === "connection-refused" && l.reason === "per-ip");
    await a.expect("QUIT", 221);
    await b.expect("QUIT", 221);
    await t.waitForNoConnections();
    (await greeted(t.ports.mta)).close();
    assert.equal(t.server.limits().refused["per-ip"], 1);
  } finally {
    await t.stop();
  }
});

test("limits.exempt skips the per-IP limit but not the total cap", async () => {
  const t = await startTestServer({ limits: { connections: { perIp: 1, total: 3 }, exempt: ["127.0.0.0/8"] } });
  try {
    const open = [await greeted(t.ports.mta), await greeted(t.ports.mta), await greeted(t.ports.mta)];
    const over = await RawSmtp.open(t.ports.mta);
    assert.match((await over.reply()).text, /^421 4\.7\.0 mail\.example\.org Error: too many connections$/);
    for (const c of open) c.close();
    await t.waitForNoConnections();
  } finally {
    await t.stop();
  }
});

test("connection rate per IP (off by default): the attempt past the limit in the window gets 421 4.7.0", async () => {
  const t = await startTestServer({ limits: { connections: { ratePerIp: 2, rateWindowSec: 60 } } });
  try {
    for (let i = 0; i < 2; i++) (await greeted(t.ports.mta)).close();
    const third = await RawSmtp.open(t.ports.mta);
    assert.match((await third.reply()).text, /^421 4\.7\.0 .*try again later/);
    await third.waitClosed();
    assert.equal(t.server.limits().refused.rate, 1);
  } finally {
    await t.stop();
  }
});

test("submission: more commands than limits.unauthCommands before AUTH get 421 4.7.0; port 25 has no such limit", async () => {
  const t = await startTestServer({ limits: { unauthCommands: 3 } });
  try {
    const c = await greeted(t.ports.submission);
    await c.expect("EHLO client.test", 250);
    await c.expect("NOOP", 250);
    await c.expect("NOOP", 250);
    const r = await c.cmd("NOOP");
    assert.match(r.text, /^421 4\.7\.0 .*too many commands without authentication/);
    await c.waitClosed();
    const mta = await greeted(t.ports.mta);
    for (let i = 0; i < 6; i++) await mta.expect("NOOP", 250);
    mta.close();
    assert.equal(t.server.limits().ended["unauth-commands"], 1);
  } finally {
    await t.stop();
  }
});

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const v = await f();
  return [v, performance.now() - start];
}

test("tarpit: errors past the soft limit are answered later and later; an exempt client is not delayed", async () => {
  const tarpit = { softErrors: 2, stepMs: 200, maxDelayMs: 1000 };
  const t = await startTestServer({ limits: { tarpit } });
  const e = await startTestServer({ limits: { tarpit, exempt: ["127.0.0.1"] } });
  try {
    const c = await greeted(t.ports.mta);
    const [first, d1] = await timed(() => c.cmd("BOGUS"));
    assert.match(first.text, /^500 5\.5\.\d /);
    assert.ok(d1 < 150, `first error answered at once (${d1} ms)`);
    const [, d2] = await timed(() => c.cmd("BOGUS"));
    const [, d3] = await timed(() => c.cmd("BOGUS"));
    assert.ok(d2 >= 190, `second error delayed one step (${d2} ms)`);
    assert.ok(d3 >= 390, `third error delayed two steps (${d3} ms)`);
    const [ok, dOk] = await timed(() => c.cmd("NOOP"));
    assert.equal(ok.code, 250);
    assert.ok(dOk < 150, `a good command is not delayed (${dOk} ms)`);
    c.close();

    const x = await greeted(e.ports.mta);
    for (let i = 0; i < 3; i++) {
      const [r, d] = await timed(() => x.cmd("BOGUS"));
      assert.equal(r.code, 500);
      assert.ok(d < 150, `exempt: no tarpit (${d} ms)`);
    }
    x.close();
  } finally {
    await t.stop();
    await e.stop();
  }
});

test("the command deadline is not reset by single bytes (slowloris): 421 4.4.2 on time", async () => {
  const t = await startTestServer({ limits: { idleTimeoutMs: 1000 } });
  try {
    const c = await greeted(t.ports.mta);
    const start = performance.now();
    const drip = setInterval(() => c.write("X"), 150);
    const r = await c.reply(5000);
    clearInterval(drip);
    const elapsed = performance.now() - start;
    assert.match(r.text, /^421 4\.4\.2 /);
    assert.ok(elapsed < 1800, `deadline kept despite the drip (${elapsed} ms)`);
    await c.waitClosed();
  } finally {
    await t.stop();
  }
});

test("minimum DATA rate: a client trickling its message gets 421 4.4.2 and nothing is queued", async () => {
  const t = await startTestServer({ limits: { minDataRate: { bytesPerSec: 1000, windowMs: 300 } } });
  try {
    const c = await greeted(t.ports.mta);
    await c.expect("EHLO slow.test", 250);
    await c.expect("MAIL FROM:<a@slow.test>", 250);
    await c.expect("RCPT TO:<postmaster@example.org>", 250);
    await c.expect("DATA", 354);
    c.write("Subject: slow\r\n");
    const r = await c.reply(3000);
    assert.match(r.text, /^421 4\.4\.2 .*data transfer too slow/);
    await c.waitClosed();
    await t.waitForNoConnections();
    const queued = await readdir(join(t.dir, "data/queue/msg")).catch(() => []);
    assert.deepEqual(queued, []);
    assert.equal(t.server.limits().ended["data-rate"], 1);
  } finally {
    await t.stop();
  }
});

test("a client sending at a good rate is not cut off by the DATA rate check", async () => {
  const t = await startTestServer({ limits: { minDataRate: { bytesPerSec: 1000, windowMs: 200 } } });
  try {
    const c = await greeted(t.ports.mta);
    await c.expect("EHLO fast.test", 250);
    await c.expect("MAIL FROM:<a@fast.test>", 250);
    await c.expect("RCPT TO:<postmaster@example.org>", 250);
    await c.expect("DATA", 354);
    const line = "x".repeat(400) + "\r\n";
    for (let i = 0; i < 6; i++) {
      c.write(line);
      await new Promise((r) => setTimeout(r, 100)); // paced on purpose: ~4 KB/s over several windows
    }
    const r = await c.cmd(".");
    assert.match(r.text, /^250 2\.0\.0 Ok: queued as /);
    c.close();
  } finally {
    await t.stop();
  }
});

test("TLS handshake deadline (limits.tlsHandshakeTimeoutMs) on port 465 and after STARTTLS", async () => {
  const t = await startTestServer({ limits: { tlsHandshakeTimeoutMs: 300 } });
  try {
    const raw = connect(t.ports.submissions, "127.0.0.1");
    raw.on("error", () => undefined);
    const start = performance.now();
    await new Promise((r) => raw.once("close", r));
    assert.ok(performance.now() - start < 2000);
    await t.waitForLog((l) => l.event === "tls-failed" && l.err === "handshake deadline");

    const c = await greeted(t.ports.submission);
    await c.expect("EHLO client.test", 250);
    await c.expect("STARTTLS", 220);
    await c.waitClosed(3000); // we never start the handshake
    await t.waitForNoConnections();
  } finally {
    await t.stop();
  }
});

test("maximal session lifetime: a busy-looking session still ends with 421 4.4.2", async () => {
  const t = await startTestServer({ limits: { sessionLifetimeMs: 600 } });
  try {
    const c = await greeted(t.ports.mta);
    await c.expect("EHLO client.test", 250);
    const keepBusy = setInterval(() => c.write("NOOP\r\n"), 100);
    let r = await c.reply();
    while (r.code === 250) r = await c.reply();
    clearInterval(keepBusy);
    assert.match(r.text, /^421 4\.4\.2 .*session time limit exceeded/);
    await c.waitClosed();
    assert.equal(t.server.limits().ended["session-lifetime"], 1);
  } finally {
    await t.stop();
  }
});

test("limiter counts return to zero on every path: QUIT, abort mid-DATA, timeout, TLS failure, refusal, server close", async () => {
  const t = await startTestServer({ limits: { idleTimeoutMs: 1000, tlsHandshakeTimeoutMs: 300, connections: { perIp: 6 }, logIntervalMs: 100 } });
  try {
    const quit = await greeted(t.ports.mta);
    await quit.expect("QUIT", 221);

    const aborted = await greeted(t.ports.mta);
    await aborted.expect("EHLO a.test", 250);
    await aborted.expect("MAIL FROM:<a@a.test>", 250);
    await aborted.expect("RCPT TO:<postmaster@example.org>", 250);
    await aborted.expect("DATA", 354);
    aborted.write("Subject: half\r\n");
    aborted.close();

    const idle = await greeted(t.ports.mta);
    assert.match((await idle.reply(3000)).text, /^421 4\.4\.2 /);

    const badTls = connect(t.ports.submissions, "127.0.0.1");
    badTls.on("error", () => undefined);
    badTls.write("EHLO not-tls\r\n");
    await new Promise((r) => badTls.once("close", r));

    const starttls = await greeted(t.ports.submission);
    await starttls.expect("EHLO client.test", 250);
    await starttls.expect("STARTTLS", 220);
    starttls.write("this is not a TLS record\r\n");
    await starttls.waitClosed();

    await t.waitForNoConnections();
    const line = await t.waitForLog((l) => l.event === "limits" && l.connections === 0 && (l.admitted as number) >= 5);
    assert.equal(line.clients, 0);

    const held = [];
    for (let i = 0; i < 5; i++) held.push(await greeted(i % 2 ? t.ports.mta : t.ports.submission));
    const implicitTls = await RawSmtp.open(t.ports.submissions, { tls: true });
    assert.equal((await implicitTls.reply()).code, 220);
    await held[0]!.expect("EHLO client.test", 250);
    await held[0]!.expect("STARTTLS", 220);
    await held[0]!.upgradeTls();
    const refused = await RawSmtp.open(t.ports.mta);
    assert.equal((await refused.reply()).code, 421);
    assert.equal(t.server.limits().connections, 6);
  } finally {
    await t.server.close();
    assert.equal(t.server.limits().connections, 0, "server close releases every slot");
    await t.stop().catch(() => undefined);
  }
});
