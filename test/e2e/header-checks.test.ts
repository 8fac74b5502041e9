/**
 * The sender checks as the next hop sees them (docs/SECURITY.md 11.1, 11.2): the real server, a
 * logged-in user, and a smarthost sink that records the exact bytes it receives. What the From:
 * check read must be what the smarthost reads — by BDAT as by DATA, on every listener.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { simpleParser } from "mailparser";
import { startPostern, type Postern } from "./helpers/postern.js";
import { RawSmtp, b64 } from "./helpers/raw-smtp.js";
import { startSink, type Sink } from "../delivery/helpers/sink.js";

const ALICE = { address: "alice@example.org", password: "alice-pw-123" };
/** The issue 11.1 attack: a bare CR in front of From: (the header collector once ended lines only at LF). */
const SPOOF = "Subject: hi\rFrom: boss@example.org\r\nTo: bob@remote.example\r\n\r\nbody\r\n";

let sink: Sink;
let strict: Postern; // smtp.bareLineEnds: reject (the default)
let lenient: Postern; // smtp.bareLineEnds: normalize

before(async () => {
  sink = await startSink({});
  const config = { relay: { smarthost: `127.0.0.1:${sink.port}` } };
  [strict, lenient] = await Promise.all([
    startPostern({ users: [ALICE], config }),
    startPostern({ users: [ALICE], config: { ...config, smtp: { bareLineEnds: "normalize" } } }),
  ]);
});
after(async () => {
  await strict?.cleanup();
  await lenient?.cleanup();
  await sink?.close();
});

/** Logged in as alice on 465 (implicit TLS), MAIL and RCPT for a remote recipient accepted. */
async function submission(server: Postern): Promise<RawSmtp> {
  const c = await RawSmtp.open(server.ports.submissions, { tls: true });
  await c.reply();
  await c.expect("EHLO client.test", 250);
  await c.expect(`AUTH PLAIN ${b64(`\0${ALICE.address}\0${ALICE.password}`)}`, 235);
  await c.expect(`MAIL FROM:<${ALICE.address}>`, 250);
  await c.expect("RCPT TO:<bob@remote.example>", 250);
  return c;
}

/** Logged in as alice on port 25 after STARTTLS. */
async function mtaLogin(server: Postern): Promise<RawSmtp> {
  const c = await RawSmtp.open(server.ports.mta);
  await c.reply();
  await c.expect("EHLO client.test", 250);
  await c.expect("STARTTLS", 220);
  await c.upgradeTls();
  await c.expect("EHLO client.test", 250);
  await c.expect(`AUTH PLAIN ${b64(`\0${ALICE.address}\0${ALICE.password}`)}`, 235);
  return c;
}

function bdatLast(c: RawSmtp, text: string) {
  const bytes = Buffer.from(text, "latin1");
  c.write(Buffer.concat([Buffer.from(`BDAT ${bytes.length} LAST\r\n`), bytes]));
  return c.reply();
}

/**
 * Sends a marker message and waits until the smarthost has it; returns what the smarthost got
 * up to then. `queuedBefore` (the server's "queued" count before the test) proves the refused
 * messages were never queued at all: only the test's accepted ones and the marker were.
 */
async function relayedUpTo(server: Postern, marker: string, queuedBefore: number, acceptedInTest: number): Promise<string[]> {
  const c = await submission(server);
  await c.expect("DATA", 354);
  await c.expect(`From: ${ALICE.address}\r\nSubject: ${marker}\r\n\r\nmarker\r\n.`, 250);
  c.close();
  for (;;) {
    const i = sink.messages.findIndex((m) => m.data.includes(`Subject: ${marker}`));
    if (i >= 0) break;
    await sink.waitForMessages(sink.messages.length + 1, 30_000);
  }
  assert.equal(queued(server) - queuedBefore, acceptedInTest + 1, "only the accepted messages and the marker were queued");
  return sink.messages.map((m) => m.data.toString("latin1"));
}

const queued = (server: Postern) => server.logs.filter((l) => l.event === "queued").length;

test("11.1: BDAT with a bare CR hiding From: is refused (521 5.5.2, closed); the smarthost never sees it", async () => {
  const before = queued(strict);
  const c = await submission(strict);
  const r = await bdatLast(c, SPOOF);
  assert.match(r.text, /^521 5\.5\.2 /);
  await c.waitClosed();
  const relayed = await relayedUpTo(strict, "marker-11.1-reject", before, 0);
  assert.ok(!relayed.some((m) => /boss@example\.org/.test(m)), "no message naming boss reached the smarthost");
});

test("11.1, normalize mode: the bare CR becomes CRLF before the check, so From: boss is refused (553) by BDAT and by DATA", async () => {
  const before = queued(lenient);
  const viaBdat = await submission(lenient);
  assert.match((await bdatLast(viaBdat, SPOOF)).text, /^553 5\.7\.1 <boss@example\.org>: From: header address rejected/);
  viaBdat.close();
  const viaData = await submission(lenient);
  await viaData.expect("DATA", 354);
  assert.match((await viaData.cmd(`${SPOOF}.`)).text, /^553 5\.7\.1 <boss@example\.org>/);
  viaData.close();
  const relayed = await relayedUpTo(lenient, "marker-11.1-normalize", before, 0);
  assert.ok(!relayed.some((m) => /boss@example\.org/.test(m)));
});

test("11.1, normalize mode: an accepted message reaches the smarthost with exactly the From: the check read", async () => {
  const before = queued(lenient);
  const c = await submission(lenient);
  const r = await bdatLast(c, `Subject: own\rFrom: Alice <${ALICE.address}>\nX-Tail: t`);
  assert.match(r.text, /^250 2\.0\.0 Ok: queued as/);
  c.close();
  const relayed = await relayedUpTo(lenient, "marker-11.1-own", before, 1);
  const mine = relayed.find((m) => m.includes("Subject: own"))!;
  // What the smarthost stores: CRLF line ends only, our header section, then the client's lines.
  assert.match(mine, /\r\nSubject: own\r\nFrom: Alice <alice@example\.org>\r\nX-Tail: t\r\n$/);
  assert.doesNotMatch(mine.replace(/\r\n/g, ""), /[\r\n]/, "no bare CR or LF reaches the next hop");
  const parsed = await simpleParser(Buffer.from(mine, "latin1"));
  assert.deepEqual(parsed.headerLines.filter((h) => h.key === "from").map((h) => h.line), ["From: Alice <alice@example.org>"]);
});

test("11.2: an authenticated session on port 25 is held to its addresses: MAIL FROM and From: of another are refused, its own is relayed", async () => {
  const before = queued(strict);
  const c = await mtaLogin(strict);
  assert.match((await c.cmd("MAIL FROM:<boss@example.org>")).text, /^553 5\.7\.1 /);
  await c.expect(`MAIL FROM:<${ALICE.address}>`, 250);
  await c.expect("RCPT TO:<bob@remote.example>", 250);
  await c.expect("DATA", 354);
  assert.match((await c.cmd("From: boss@example.org\r\nSubject: spoof-25\r\n\r\nbody\r\n.")).text, /^553 5\.7\.1 <boss@example\.org>: From: header address rejected/);
  await c.expect(`MAIL FROM:<${ALICE.address}>`, 250);
  await c.expect("RCPT TO:<bob@remote.example>", 250);
  assert.match((await bdatLast(c, "From: boss@example.org\r\nSubject: spoof-25-bdat\r\n\r\nbody\r\n")).text, /^553 5\.7\.1 /);
  await c.expect(`MAIL FROM:<${ALICE.address}>`, 250);
  await c.expect("RCPT TO:<bob@remote.example>", 250);
  await c.expect("DATA", 354);
  await c.expect(`From: ${ALICE.address}\r\nSubject: own-25\r\n\r\nbody\r\n.`, 250);
  c.close();
  const relayed = await relayedUpTo(strict, "marker-11.2", before, 1);
  assert.ok(relayed.some((m) => m.includes("Subject: own-25")), "the user's own message is relayed");
  assert.ok(!relayed.some((m) => m.includes("spoof-25")), "neither spoof reached the smarthost");
});
