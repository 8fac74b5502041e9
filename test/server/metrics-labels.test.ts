/**
 * docs/SECURITY.md 11.6: Prometheus label values come from closed sets. A made-up AUTH mechanism
 * or a refusal text (which names addresses) as a label value would be a new time series for the
 * life of the process — memory any unauthenticated client can grow — and would put users'
 * addresses on /metrics. The real `postern serve` with its admin listener, a real client.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { startPostern, type Postern } from "../e2e/helpers/postern.js";
import { RawSmtp, b64 } from "../e2e/helpers/raw-smtp.js";
import { refusalCode } from "../../src/server/metrics.js";

const JANE = { address: "jane@example.org", password: "jane's secret" };
let pg: Postern;
let admin: number;

before(async () => {
  pg = await startPostern({
    users: [JANE],
    // Loopback is exempt from the tarpit; a high error limit lets one session send 1,000 AUTHs.
    config: { admin: { port: 0 }, limits: { errors: 5000, unauthCommands: 0, exempt: ["127.0.0.0/8"], authFailureDelayMs: 10 } },
  });
  admin = (await pg.waitForLog((l) => l.event === "admin-listening")).port as number;
});
after(async () => {
  await pg?.cleanup();
});

const metrics = async () => (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
const series = (body: string, name: string) => body.split("\n").filter((l) => l.startsWith(`${name}{`));

test('1,000 made-up AUTH mechanisms keep /metrics bounded: they count as mechanism="other"', async () => {
  const c = await RawSmtp.open(pg.ports.submissions, { tls: true });
  await c.reply();
  await c.expect("EHLO metrics.test", 250);
  const before = await metrics();
  for (let i = 0; i < 1000; i++) {
    const name = `X-${randomBytes(8).toString("hex").toUpperCase()}`; // 18 characters: a valid SASL name (RFC 4422 §3.1)
    assert.equal((await c.cmd(`AUTH ${name}`)).code, 504);
  }
  c.close();
  const after = await metrics();
  const auth = series(after, "postern_auth_total");
  assert.ok(auth.length <= 5, `postern_auth_total series: ${auth.length}\n${auth.slice(0, 5).join("\n")}`);
  assert.match(after, /^postern_auth_total\{mechanism="other",result="failure",reason="mechanism-not-allowed"\} 1000$/m);
  // Postern's own series (Node's process metrics vary by themselves: a first major GC adds series).
  const own = (body: string) => body.split("\n").filter((l) => !/^(# (HELP|TYPE) )?postern_(nodejs_|process_)/.test(l));
  const grown = own(after).join("\n").length - own(before).join("\n").length;
  assert.ok(grown < 2000, `Postern's series on /metrics grew by ${grown} bytes`);
  assert.doesNotMatch(after, /X-[0-9A-F]{16}/);
});

test("refusals are counted by reason code: no address (nor any client text) appears on /metrics", async () => {
  const c = await RawSmtp.open(pg.ports.submissions, { tls: true });
  await c.reply();
  await c.expect("EHLO metrics.test", 250);
  await c.expect(`AUTH PLAIN ${b64(`\0${JANE.address}\0${JANE.password}`)}`, 235);
  await c.expect("MAIL FROM:<boss.secret@example.org>", 553); // not jane's: "sender … not owned by jane@…"
  await c.expect(`MAIL FROM:<${JANE.address}>`, 250);
  await c.expect("RCPT TO:<no.such.user@example.org>", 550);
  c.close();
  const mta = await RawSmtp.open(pg.ports.mta);
  await mta.reply();
  await mta.expect("EHLO metrics.test", 250);
  await mta.expect("MAIL FROM:<stranger@elsewhere.test>", 250);
  await mta.expect("RCPT TO:<victim@far-away.test>", 554); // relay denied
  mta.close();
  await pg.waitForLog((l) => l.event === "rcpt-refused" && String(l.to).includes("far-away"));

  const body = await metrics();
  assert.match(body, /^postern_messages_refused_total\{stage="mail",reason="sender-not-owned"\} 1$/m);
  assert.match(body, /^postern_messages_refused_total\{stage="rcpt",reason="unknown-recipient"\} 1$/m);
  assert.match(body, /^postern_messages_refused_total\{stage="rcpt",reason="relay-denied"\} 1$/m);
  assert.doesNotMatch(body, /@/, "no address on /metrics");
  for (const line of series(body, "postern_messages_refused_total")) assert.match(line, /reason="[a-z-]+"/, line);
});

test("refusalCode: known reasons map to codes, anything else (or an unknown code) to other", () => {
  assert.equal(refusalCode({ reason: "sender a@b not owned by c@d" }), "sender-not-owned");
  assert.equal(refusalCode({ reason: "From: header a@b not owned by c@d" }), "from-not-owned");
  assert.equal(refusalCode({ reason: "relay denied: not authenticated and not in mynetworks" }), "relay-denied");
  assert.equal(refusalCode({ reason: "send limit: 10 messages per hour" }), "send-limit-messages");
  assert.equal(refusalCode({ reason: "<x@y> whatever a future check says" }), "other");
  assert.equal(refusalCode({ reason: "anything", code: "too-big" }), "too-big", "an event may name its code");
  assert.equal(refusalCode({ reason: "anything", code: "x@y" }), "other", "but only a known one");
});
