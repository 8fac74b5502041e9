/**
 * MAIL and RCPT through the session with the real relay and sender policies: who may relay, which
 * senders an authenticated user owns, the SIZE and recipient limits, DSN and SMTPUTF8 parameters.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Harness, TRUSTED_IP, ready, type HarnessOptions } from "./session-helpers.js";

const MTA: HarnessOptions = { mode: "mta" };
const SUBMISSION: HarnessOptions = { mode: "submission" };

// ---- relay ------------------------------------------------------------------------------------

interface RelayCase {
  name: string;
  opts: HarnessOptions;
  user?: string;
  rcpt: string;
  expected: string;
  text?: string;
}

const RELAY_CASES: RelayCase[] = [
  { name: "mta, unauthenticated, remote domain", opts: MTA, rcpt: "x@remote.example", expected: "554 5.7.1", text: "<x@remote.example>: Relay access denied" },
  { name: "mta, unauthenticated, remote domain that ends like ours", opts: MTA, rcpt: "x@notexample.org", expected: "554 5.7.1" },
  { name: "mta, unauthenticated, subdomain of ours", opts: MTA, rcpt: "x@sub.example.org", expected: "554 5.7.1" },
  { name: "mta, unauthenticated, %-hack is not routing", opts: MTA, rcpt: "x%remote.example@example.org", expected: "550 5.1.1" },
  { name: "mta, unauthenticated, address literal", opts: MTA, rcpt: "x@[192.0.2.1]", expected: "554 5.7.1" },
  { name: "mta, unauthenticated, source route stripped to the final hop", opts: MTA, rcpt: "@example.org:x@remote.example", expected: "554 5.7.1" },
  { name: "mta, unauthenticated, local user", opts: MTA, rcpt: "bob@example.org", expected: "250 2.1.5" },
  { name: "mta, unauthenticated, local user, domain in upper case with root dot", opts: MTA, rcpt: "bob@EXAMPLE.ORG.", expected: "250 2.1.5" },
  { name: "mta, unauthenticated, postmaster of a local domain", opts: MTA, rcpt: "postmaster@example.org", expected: "250 2.1.5" },
  {
    name: "mta, unauthenticated, unknown local user",
    opts: MTA,
    rcpt: "nobody@example.org",
    expected: "550 5.1.1",
    text: "<nobody@example.org>: Recipient address rejected: User unknown in local recipient table",
  },
  { name: "mta, from mynetworks, remote domain", opts: { mode: "mta", remoteIp: TRUSTED_IP }, rcpt: "x@remote.example", expected: "250 2.1.5" },
  {
    name: "mta, from mynetworks as IPv4-mapped IPv6, remote domain",
    opts: { mode: "mta", remoteIp: "::ffff:192.0.2.99" },
    rcpt: "x@remote.example",
    expected: "250 2.1.5",
  },
  { name: "mta, from mynetworks (IPv6), remote domain", opts: { mode: "mta", remoteIp: "2001:db8::25" }, rcpt: "x@remote.example", expected: "250 2.1.5" },
  {
    name: "mta, from mynetworks, unknown local user still refused",
    opts: { mode: "mta", remoteIp: TRUSTED_IP },
    rcpt: "nobody@example.org",
    expected: "550 5.1.1",
  },
  {
    name: "mta after TLS, authenticated, remote domain",
    opts: { mode: "mta", tls: true },
    user: "alice@example.org",
    rcpt: "x@remote.example",
    expected: "250 2.1.5",
  },
  { name: "submission, authenticated, remote domain", opts: SUBMISSION, rcpt: "x@remote.example", expected: "250 2.1.5" },
  { name: "submission, authenticated, unknown local user", opts: SUBMISSION, rcpt: "nobody@example.org", expected: "550 5.1.1" },
  {
    name: "submissions, authenticated from mynetworks, remote domain",
    opts: { mode: "submissions", remoteIp: TRUSTED_IP },
    rcpt: "x@remote.example",
    expected: "250 2.1.5",
  },
];

for (const c of RELAY_CASES) {
  test(`relay: ${c.name}: RCPT TO:<${c.rcpt}> → ${c.expected}`, async () => {
    const h = await ready(c.opts, c.user);
    await h.expect(["MAIL FROM:<>", "250 2.1.0"]);
    const out = await h.send(`RCPT TO:<${c.rcpt}>`);
    assert.equal(out.replies.map((r) => `${r.code} ${r.enhanced}`).join(), c.expected);
    if (c.text) assert.equal(out.replies[0]!.lines[0], c.text);
  });
}

test("every refused RCPT is logged with its reason", async () => {
  const h = await ready(MTA);
  await h.expect(["MAIL FROM:<>", "250 2.1.0"], ["RCPT TO:<x@remote.example>", "554 5.7.1"]);
  const entry = h.logs.find((l) => l.fields.event === "rcpt-refused");
  assert.equal(entry?.fields.reason, "relay denied: not authenticated and not in mynetworks");
  assert.equal(entry?.fields.to, "x@remote.example");
});

test("submission: a client in mynetworks still cannot send without AUTH", async () => {
  const h = new Harness({ mode: "submission", remoteIp: TRUSTED_IP });
  await h.ehlo();
  await h.startTls();
  await h.ehlo();
  await h.expect(["MAIL FROM:<>", "530 5.7.0"], ["RCPT TO:<x@remote.example>", "503 5.5.1"]);
});

test("RFC 5321 §4.1.1.3: RCPT TO:<Postmaster> without a domain is accepted and stored as our postmaster", async () => {
  const h = await ready(MTA);
  await h.expect(["MAIL FROM:<>", "250 2.1.0"], ["RCPT TO:<Postmaster>", "250 2.1.5"], ["DATA", "354"]);
  await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
  assert.deepEqual(
    h.spools[0]!.envelope!.recipients.map((r) => r.address),
    ["postmaster@example.org"],
  );
});

// ---- sender ownership -----------------------------------------------------------------------------

const SENDER_CASES: [string, string][] = [
  ["alice@example.org", "250 2.1.0"],
  ["Alice@Example.ORG", "250 2.1.0"],
  ["alice+lists@example.org", "250 2.1.0"],
  ["alice.smith@example.org", "250 2.1.0"],
  ["alice.smith+x@example.org", "250 2.1.0"],
  ["anything@alice.example", "250 2.1.0"],
  ["", "250 2.1.0"],
  ["bob@example.org", "553 5.7.1"],
  ["alicex@example.org", "553 5.7.1"],
  ["alice@example.org.evil.example", "553 5.7.1"],
  ["anything@sub.alice.example", "553 5.7.1"],
  ["alice@remote.example", "553 5.7.1"],
];

for (const [sender, expected] of SENDER_CASES) {
  test(`sender ownership (alice on submission): MAIL FROM:<${sender}> → ${expected}`, async () => {
    const h = await ready(SUBMISSION);
    await h.expect([`MAIL FROM:<${sender}>`, expected]);
  });
}

test("the sender refusal names the address and the login", async () => {
  const h = await ready(SUBMISSION);
  const out = await h.send("MAIL FROM:<bob@example.org>");
  assert.equal(out.replies[0]!.lines[0], "<bob@example.org>: Sender address rejected: not owned by user alice@example.org");
});

test("an authenticated user on the mta listener is held to its addresses too", async () => {
  const h = await ready({ mode: "mta", tls: true }, "alice@example.org");
  await h.expect(["MAIL FROM:<bob@example.org>", "553 5.7.1"], ["MAIL FROM:<alice@example.org>", "250 2.1.0"]);
});

test("an unauthenticated mta client may use any sender", async () => {
  const h = await ready(MTA);
  await h.expect(["MAIL FROM:<bob@example.org>", "250 2.1.0"]);
});

test("after a refused MAIL there is no transaction: RCPT → 503", async () => {
  const h = await ready(SUBMISSION);
  await h.expect(["MAIL FROM:<bob@example.org>", "553 5.7.1"], ["RCPT TO:<x@remote.example>", "503 5.5.1"]);
});

// ---- parameters and limits ------------------------------------------------------------------------

for (const [size, expected] of [
  ["1000", "250 2.1.0"],
  ["1000000", "250 2.1.0"],
  ["1000001", "552 5.3.4"],
  ["99999999999999999999", "552 5.3.4"],
  ["-1", "501 5.5.4"],
  ["", "501 5.5.4"],
] as const) {
  test(`SIZE=${size} with a 1000000-octet limit → ${expected}`, async () => {
    const h = await ready({ mode: "mta", limits: { messageSize: 1_000_000 } });
    await h.expect([`MAIL FROM:<> SIZE=${size}`, expected]);
  });
}

test("recipients limit: the one past the limit → 452 4.5.3, the accepted ones stay", async () => {
  const h = await ready({ mode: "mta", limits: { recipients: 3 } });
  await h.expect(
    ["MAIL FROM:<>", "250 2.1.0"],
    ["RCPT TO:<alice@example.org>", "250 2.1.5"],
    ["RCPT TO:<bob@example.org>", "250 2.1.5"],
    ["RCPT TO:<postmaster@example.org>", "250 2.1.5"],
    ["RCPT TO:<abuse@example.org>", "452 4.5.3"],
    ["DATA", "354"],
  );
});

test("duplicate and refused RCPTs do not count towards the recipients limit", async () => {
  const h = await ready({ mode: "mta", limits: { recipients: 2 } });
  await h.expect(
    ["MAIL FROM:<>", "250 2.1.0"],
    ["RCPT TO:<alice@example.org>", "250 2.1.5"],
    ["RCPT TO:<alice@example.org>", "250 2.1.5"],
    ["RCPT TO:<nobody@example.org>", "550 5.1.1"],
    ["RCPT TO:<bob@example.org>", "250 2.1.5"],
    ["RCPT TO:<postmaster@example.org>", "452 4.5.3"],
  );
});

test("RFC 5321 §4.5.3.1.10: a client overshooting the recipients limit is not disconnected for it", async () => {
  // A pipelining client sends all its RCPTs, gets 452 for the excess and sends those later;
  // closing the connection for them would fail the whole transaction, again at every retry.
  const h = await ready({ mode: "mta", limits: { recipients: 2, errors: 5 } });
  await h.expect(["MAIL FROM:<>", "250 2.1.0"], ["RCPT TO:<alice@example.org>", "250 2.1.5"], ["RCPT TO:<bob@example.org>", "250 2.1.5"]);
  for (let i = 0; i < 10; i++) await h.expect([`RCPT TO:<user${i}@example.org>`, "452 4.5.3"]);
  await h.expect(["DATA", "354"]);
  const { output } = await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
  assert.equal(output.replies[0]!.code, 250);
  assert.equal(h.spools[0]!.envelope!.recipients.length, 2);
});

test("duplicate RCPTs (any case) are stored once, with the first one's DSN parameters", async () => {
  const h = await ready(MTA);
  await h.expect(
    ["MAIL FROM:<>", "250 2.1.0"],
    ["RCPT TO:<bob@example.org> NOTIFY=NEVER", "250 2.1.5"],
    ["RCPT TO:<bob@example.org> NOTIFY=SUCCESS", "250 2.1.5"],
    ["RCPT TO:<bob@EXAMPLE.org>", "250 2.1.5"],
    ["DATA", "354"],
  );
  await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
  assert.deepEqual(
    h.spools[0]!.envelope!.recipients.map((r) => [r.address, r.notify]),
    [["bob@example.org", ["NEVER"]]],
  );
});

test("DSN parameters (RET, ENVID, NOTIFY, ORCPT) and BODY land in the envelope, xtext decoded", async () => {
  const h = await ready(MTA);
  await h.expect(
    ["MAIL FROM:<sender@remote.example> RET=HDRS ENVID=QQ+2B123 BODY=8BITMIME", "250 2.1.0"],
    ["RCPT TO:<alice@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Alice+40example.org", "250 2.1.5"],
    ["RCPT TO:<bob@example.org>", "250 2.1.5"],
    ["DATA", "354"],
  );
  await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
  const env = h.spools[0]!.envelope!;
  assert.equal(env.mailFrom, "sender@remote.example");
  assert.equal(env.ret, "HDRS");
  assert.equal(env.envid, "QQ+123");
  assert.equal(env.body, "8BITMIME");
  assert.deepEqual(env.recipients[0], {
    address: "alice@example.org",
    notify: ["SUCCESS", "FAILURE"],
    orcpt: { addrType: "rfc822", address: "Alice@example.org" },
  });
  assert.equal(env.recipients[1]!.address, "bob@example.org");
  assert.equal(env.recipients[1]!.notify, undefined);
  assert.equal(env.recipients[1]!.orcpt, undefined);
});

for (const [line, expected] of [
  ["MAIL FROM:<> RET=ALL", "501 5.5.4"],
  ["MAIL FROM:<> ENVID=a+0Db", "501 5.5.4"],
  ["MAIL FROM:<> FOO=bar", "555 5.5.4"],
  ["MAIL FROM:<> SIZE=10 SIZE=10", "501 5.5.4"],
] as const) {
  test(`MAIL parameter refused: ${line} → ${expected}`, async () => {
    const h = await ready(MTA);
    await h.expect([line, expected], ["MAIL FROM:<>", "250 2.1.0"]);
  });
}

for (const [line, expected] of [
  ["RCPT TO:<bob@example.org> NOTIFY=NEVER,SUCCESS", "501 5.5.4"],
  ["RCPT TO:<bob@example.org> ORCPT=rfc822;a+0Ab", "501 5.5.4"],
  ["RCPT TO:<bob@example.org> FOO", "555 5.5.4"],
] as const) {
  test(`RCPT parameter refused: ${line} → ${expected}`, async () => {
    const h = await ready(MTA);
    await h.expect(["MAIL FROM:<>", "250 2.1.0"], [line, expected], ["RCPT TO:<bob@example.org>", "250 2.1.5"]);
  });
}

test("after HELO (no extensions) every ESMTP parameter is 555 5.5.4", async () => {
  const h = new Harness(MTA);
  await h.expect(["HELO client.example.net", "250"]);
  for (const p of ["SIZE=10", "BODY=8BITMIME", "SMTPUTF8", "RET=FULL", "ENVID=x", "AUTH=<>"]) {
    await h.expect([`MAIL FROM:<> ${p}`, "555 5.5.4"]);
  }
  await h.expect(["MAIL FROM:<>", "250 2.1.0"], ["RCPT TO:<bob@example.org> NOTIFY=NEVER", "555 5.5.4"]);
});

test("MAIL AUTH=<> is accepted on a listener offering AUTH", async () => {
  const h = await ready({ mode: "mta", tls: true });
  await h.expect(["MAIL FROM:<> AUTH=<>", "250 2.1.0"]);
});

test("MAIL AUTH= from an authenticated client is accepted (RFC 4954 §5)", async () => {
  const h = await ready(SUBMISSION);
  await h.expect(["MAIL FROM:<alice@example.org> AUTH=alice+40example.org", "250 2.1.0"]);
});

test("MAIL AUTH= on the mta before TLS (AUTH not offered) → 555 5.5.4", async () => {
  const h = await ready(MTA);
  await h.expect(["MAIL FROM:<> AUTH=<>", "555 5.5.4"]);
});

test("SMTPUTF8: a UTF-8 sender without the SMTPUTF8 parameter → 553 5.6.7; with it → 250", async () => {
  const h = await ready(MTA);
  await h.expect(["MAIL FROM:<jöran@bücher.example>", "553 5.6.7"], ["MAIL FROM:<jöran@bücher.example> SMTPUTF8", "250 2.1.0"]);
});

test("SMTPUTF8: a UTF-8 recipient in a transaction without SMTPUTF8 → 553 5.6.7", async () => {
  const h = await ready({ mode: "mta", remoteIp: TRUSTED_IP });
  await h.expect(["MAIL FROM:<>", "250 2.1.0"], ["RCPT TO:<jöran@bücher.example>", "553 5.6.7"]);
  await h.expect(["RSET", "250 2.0.0"], ["MAIL FROM:<> SMTPUTF8", "250 2.1.0"], ["RCPT TO:<jöran@bücher.example>", "250 2.1.5"]);
});

test("SMTPUTF8 transaction: the envelope says so", async () => {
  const h = await ready(MTA);
  await h.expect(["MAIL FROM:<jöran@bücher.example> SMTPUTF8", "250 2.1.0"], ["RCPT TO:<bob@example.org>", "250 2.1.5"], ["DATA", "354"]);
  await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
  assert.equal(h.spools[0]!.envelope!.smtputf8, true);
  assert.equal(h.spools[0]!.envelope!.mailFrom, "jöran@bücher.example");
});

for (const [line, expected] of [
  ["MAIL FROM:<a@b@example.org>", "501 5.1.7"],
  ['MAIL FROM:<"a@b"@example.org>', "501 5.1.7"],
  ["MAIL FROM:alice@example.org", "501 5.5.2"],
  ["MAIL FROM:<alice@example.org", "501 5.5.2"],
] as const) {
  test(`bad sender syntax: ${line} → ${expected}`, async () => {
    const h = await ready(MTA);
    await h.expect([line, expected]);
  });
}

for (const [line, expected] of [
  ["RCPT TO:<>", "501 5.1.3"],
  ["RCPT TO:<a@b@example.org>", "501 5.1.3"],
  ["RCPT TO:<bob@exa_mple.org>", "501 5.1.3"],
] as const) {
  test(`bad recipient syntax: ${line} → ${expected}`, async () => {
    const h = await ready(MTA);
    await h.expect(["MAIL FROM:<>", "250 2.1.0"], [line, expected]);
  });
}

test("RCPTs differing only in the local part's case are distinct recipients (RFC 5321 §2.4)", async () => {
  const h = await ready({ mode: "mta", remoteIp: TRUSTED_IP });
  await h.expect(
    ["MAIL FROM:<>", "250 2.1.0"],
    ["RCPT TO:<John@remote.example>", "250 2.1.5"],
    ["RCPT TO:<john@REMOTE.example>", "250 2.1.5"],
    ["DATA", "354"],
  );
  await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
  assert.deepEqual(
    h.spools[0]!.envelope!.recipients.map((r) => r.address),
    ["John@remote.example", "john@remote.example"],
  );
});
