/**
 * Many connections against one real `postern serve`: 2,000 held at once (idle after EHLO, every
 * tenth in the middle of DATA), more on top of the total cap, some reset by the client. Every one
 * is served or gets a clean 421 4.7.0, nothing reaches an unhandled error handler (stderr stays
 * empty, the process lives), and a normal client submits meanwhile.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { connect } from "node:net";
import { startPostern, type Postern } from "./helpers/postern.js";
import { RawSmtp, b64 } from "./helpers/raw-smtp.js";

const HELD = 2000;
const EXTRA = 40;
/** Room for one normal client and a few of the extra ones; the rest of EXTRA must be refused. */
const TOTAL = HELD + 10;
const BATCH = 200;

let server: Postern | undefined;
after(async () => server?.cleanup());

async function inBatches<T>(count: number, f: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let start = 0; start < count; start += BATCH) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(BATCH, count - start) }, (_, k) => f(start + k)))));
  }
  return out;
}

test(`${HELD} concurrent connections (idle and mid-DATA): all served or 421, a normal client still submits, no stray errors`, { timeout: 60_000 }, async () => {
  // Node raises its soft descriptor limit to the hard one at start; both processes need HELD + slack.
  const fdLimit = Number(execFileSync("sh", ["-c", "ulimit -n"]).toString().trim());
  assert.ok(fdLimit >= HELD + 500, `this test needs ulimit -n >= ${HELD + 500} (hard limit), found ${fdLimit}`);

  server = await startPostern({
    users: [{ address: "john@example.org", password: "pw-john-123" }],
    config: {
      // The whole load comes from 127.0.0.1, so the per-IP cap is raised with the total one.
      limits: {
        connections: { total: TOTAL, perIp: TOTAL },
        greetPauseMs: 50,
        authFailureDelayMs: 10,
        minDataRate: { bytesPerSec: 0 }, // the mid-DATA clients pause on purpose
      },
      log: { level: "info" },
    },
  });
  const srv = server;
  const started = performance.now();

  const held = await inBatches(HELD, async (i) => {
    const c = await RawSmtp.open(srv.ports.mta);
    assert.equal((await c.reply(20_000)).code, 220);
    await c.expect(`EHLO client${i}.test`, 250);
    if (i % 10 === 0) {
      await c.expect(`MAIL FROM:<c${i}@client.test>`, 250);
      await c.expect("RCPT TO:<john@example.org>", 250);
      await c.expect("DATA", 354);
      c.write(`Subject: held ${i}\r\n\r\nfirst half of the body\r\n`);
    }
    return c;
  });
  const heldMs = performance.now() - started;

  // A normal client on the submission port: STARTTLS, AUTH, one message.
  const normal = await RawSmtp.open(srv.ports.submission);
  assert.equal((await normal.reply()).code, 220);
  await normal.expect("EHLO laptop.test", 250);
  await normal.expect("STARTTLS", 220);
  await normal.upgradeTls();
  await normal.expect("EHLO laptop.test", 250);
  await normal.expect(`AUTH PLAIN ${b64("\0john@example.org\0pw-john-123")}`, 235);
  await normal.expect("MAIL FROM:<john@example.org>", 250);
  await normal.expect("RCPT TO:<john@example.org>", 250);
  await normal.expect("DATA", 354);
  const queued = await normal.cmd("From: john@example.org\r\nSubject: meanwhile\r\n\r\nstill works\r\n.");
  assert.match(queued.text, /^250 2\.0\.0 Ok: queued as /);
  await normal.expect("QUIT", 221);

  // Past the total cap: each extra connection is served or refused cleanly, never reset or silent.
  const extra = await Promise.all(
    Array.from({ length: EXTRA }, async () => {
      const c = await RawSmtp.open(srv.ports.mta);
      const r = await c.reply(20_000);
      return { c, r };
    }),
  );
  const refused = extra.filter(({ r }) => r.code === 421);
  for (const { r } of refused) assert.match(r.text, /^421 4\.7\.0 mail\.example\.org Error: too many connections$/);
  const served = extra.filter(({ r }) => r.code === 220);
  assert.equal(served.length + refused.length, EXTRA, extra.map(({ r }) => r.text).join(" | "));
  assert.ok(refused.length >= EXTRA - (TOTAL - HELD), `refused ${refused.length} of ${EXTRA}`);
  for (const { c } of extra) c.close();

  // Clients that vanish with a TCP reset mid-command.
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      const s = connect(srv.ports.submission, "127.0.0.1");
      s.on("error", () => undefined);
      await new Promise((r) => s.once("connect", r));
      s.write("EHLO half-a-comm");
      s.resetAndDestroy();
    }),
  );

  // The held ones are still served: the mid-DATA ones finish their message, everyone quits.
  const queuedIds: string[] = [/queued as (\S+)/.exec(queued.text)![1]!];
  await inBatches(HELD, async (i) => {
    const c = held[i]!;
    if (i % 10 === 0) {
      const r = await c.cmd("second half\r\n.");
      assert.match(r.text, /^250 2\.0\.0 /);
      queuedIds.push(/queued as (\S+)/.exec(r.text)![1]!);
    }
    await c.expect("QUIT", 221);
  });
  const totalMs = performance.now() - started;

  assert.ok(srv.running(), "the server process is still running");
  assert.equal(srv.stderr(), "", "nothing reached stderr (no unhandled error)");
  // The log is written asynchronously: wait for each acknowledged message's line, then count.
  for (const id of queuedIds) await srv.waitForLog((l) => l.event === "queued" && l.id === id);
  assert.equal(srv.logs.filter((l) => l.event === "queued").length, HELD / 10 + 1);
  // Checked once those lines are in (lines arrive in order), so an error logged before them is seen.
  assert.equal(srv.logs.filter((l) => l.event === "internal-error").length, 0);
  console.log(`${HELD} connections held in ${Math.round(heldMs)} ms; whole test ${Math.round(totalMs)} ms; extra refused ${refused.length}/${EXTRA}`);
});
