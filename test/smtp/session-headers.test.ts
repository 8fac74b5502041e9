/**
 * What the session reads in and adds to the header section: the Received: trace field with the
 * RFC 3848 protocol name, Date/Message-ID for submitted mail (RFC 6409 §8), the mail-loop check
 * (RFC 5321 §6.3) and the From:/Sender: ownership check for authenticated clients on every listener.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Harness, HOST, codes, ready, type HarnessOptions } from "./session-helpers.js";

const DATE_LINE = "Date: Wed, 4 Mar 2026 05:06:07 +0000";
const MESSAGE_ID = new RegExp(`^Message-ID: <[0-9a-z]+\\.[0-9a-f]{16}@${HOST.replace(/\./g, "\\.")}>$`);

/** Header lines as stored, up to the empty line (folded lines kept apart). */
function storedHeaderLines(text: string): string[] {
  return text.slice(0, text.indexOf("\r\n\r\n")).split("\r\n");
}

/** The Received: field we put on top, unfolded. */
function ourReceived(text: string): string {
  const end = text.search(/\r\n(?![\t ])/);
  return text.slice(0, end).replace(/\r\n[\t ]/g, " ");
}

// ---- Received: and RFC 3848 protocol names ------------------------------------------------------

interface ProtocolCase {
  protocol: string;
  opts: HarnessOptions;
  steps: (h: Harness) => Promise<void>;
  tls: boolean;
}

const PROTOCOLS: ProtocolCase[] = [
  { protocol: "SMTP", opts: { mode: "mta" }, tls: false, steps: async (h) => void (await h.expect(["HELO client.example.net", "250"])) },
  { protocol: "ESMTP", opts: { mode: "mta" }, tls: false, steps: async (h) => void (await h.ehlo()) },
  {
    protocol: "ESMTPS",
    opts: { mode: "mta" },
    tls: true,
    steps: async (h) => {
      await h.ehlo();
      await h.startTls();
      await h.ehlo();
    },
  },
  {
    protocol: "ESMTPA",
    opts: { mode: "submission", authWithoutTls: true },
    tls: false,
    steps: async (h) => {
      await h.ehlo();
      await h.login();
    },
  },
  {
    protocol: "ESMTPSA",
    opts: { mode: "submission" },
    tls: true,
    steps: async (h) => {
      await h.ehlo();
      await h.startTls();
      await h.ehlo();
      await h.login();
    },
  },
  {
    protocol: "ESMTPSA",
    opts: { mode: "submissions" },
    tls: true,
    steps: async (h) => {
      await h.ehlo();
      await h.login();
    },
  },
];

for (const c of PROTOCOLS) {
  test(`Received: on top says "with ${c.protocol} id <queue id>" (${c.opts.mode}${c.opts.authWithoutTls ? ", AUTH in clear" : ""})`, async () => {
    const h = new Harness(c.opts);
    await c.steps(h);
    const spool = await h.toData({ from: "alice@example.org", to: ["bob@example.org"] });
    await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
    const r = ourReceived(spool.text);
    const using = c.tls ? " (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)" : "";
    const helo = "client.example.net";
    assert.equal(
      r,
      `Received: from ${helo} ([198.51.100.7]) by ${HOST} (Postern) with ${c.protocol} id Q1${using} for <bob@example.org>; Wed, 4 Mar 2026 05:06:07 +0000`,
    );
  });
}

test("Received: names no recipient when there are several", async () => {
  const h = await ready({ mode: "mta" });
  const spool = await h.toData({ from: "x@remote.example", to: ["alice@example.org", "bob@example.org"] });
  await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
  assert.doesNotMatch(ourReceived(spool.text), / for </);
});

test("Received: writes an IPv6 client as [IPv6:...]", async () => {
  const h = await ready({ mode: "mta", remoteIp: "2001:db8::25" });
  const spool = await h.toData();
  await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
  assert.match(ourReceived(spool.text), /^Received: from client\.example\.net \(\[IPv6:2001:db8::25\]\) by /);
});

// ---- Date and Message-ID for submitted mail ---------------------------------------------------------

interface AddedCase {
  name: string;
  opts: HarnessOptions;
  user?: string;
  headers: string;
  added: ("Date" | "Message-ID")[];
}

const ADDED: AddedCase[] = [
  { name: "submission, neither present", opts: { mode: "submission" }, headers: "From: alice@example.org\r\n", added: ["Date", "Message-ID"] },
  { name: "submissions, neither present", opts: { mode: "submissions" }, headers: "Subject: x\r\n", added: ["Date", "Message-ID"] },
  { name: "submission, Date present", opts: { mode: "submission" }, headers: "Date: Tue, 3 Mar 2026 00:00:00 +0000\r\n", added: ["Message-ID"] },
  { name: "submission, Message-ID present", opts: { mode: "submission" }, headers: "Message-ID: <a@b>\r\n", added: ["Date"] },
  {
    name: "submission, both present in odd case",
    opts: { mode: "submission" },
    headers: "DATE: Tue, 3 Mar 2026 00:00:00 +0000\r\nmessage-id: <a@b>\r\n",
    added: [],
  },
  { name: "mta, unauthenticated", opts: { mode: "mta" }, headers: "Subject: x\r\n", added: [] },
  { name: "mta, authenticated", opts: { mode: "mta", tls: true }, user: "alice@example.org", headers: "Subject: x\r\n", added: [] },
];

for (const c of ADDED) {
  test(`${c.name}: adds ${c.added.join(" and ") || "nothing"}`, async () => {
    const h = await ready(c.opts, c.user);
    const spool = await h.toData({ from: "alice@example.org", to: ["bob@example.org"] });
    await h.data(`${c.headers}\r\nbody\r\n.\r\n`);
    const lines = storedHeaderLines(spool.text);
    const ourEnd = lines.findIndex((l, i) => i > 0 && !/^[\t ]/.test(l));
    const addedLines = lines.slice(ourEnd, lines.length - c.headers.split("\r\n").length + 1);
    assert.deepEqual(
      addedLines.map((l) => l.slice(0, l.indexOf(":"))),
      c.added,
      lines.join("\n"),
    );
    for (const l of addedLines) {
      if (l.startsWith("Date:")) assert.equal(l, DATE_LINE);
      else assert.match(l, MESSAGE_ID);
    }
    assert.ok(spool.text.endsWith(`${c.headers}\r\nbody\r\n`), "the client's header section follows unchanged");
  });
}

test("each submitted message gets its own Message-ID", async () => {
  const h = await ready({ mode: "submissions" });
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const spool = await h.toData({ to: ["bob@example.org"] });
    await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
    ids.push(storedHeaderLines(spool.text).find((l) => l.startsWith("Message-ID:"))!);
  }
  assert.notEqual(ids[0], ids[1]);
});

// ---- mail loops -------------------------------------------------------------------------------------

for (const [count, expected] of [
  [9, "250 2.0.0"],
  [10, "554 5.4.6"],
  [30, "554 5.4.6"],
] as const) {
  test(`${count} Received: fields with maxReceivedHeaders 10 → ${expected}`, async () => {
    const h = await ready({ mode: "mta", limits: { maxReceivedHeaders: 10 } });
    const spool = await h.toData();
    const trace = "Received: from a by b; Tue, 3 Mar 2026 00:00:00 +0000\r\n".repeat(count);
    const { output } = await h.data(`${trace}Subject: loop\r\n\r\nhi\r\n.\r\n`);
    assert.deepEqual(codes(output), [expected]);
    assert.equal(spool.commits + spool.aborts, 1);
    assert.equal(spool.commits, expected.startsWith("250") ? 1 : 0);
  });
}

test("Received: lines in the body do not count as hops", async () => {
  const h = await ready({ mode: "mta", limits: { maxReceivedHeaders: 10 } });
  await h.toData();
  const { output } = await h.data(`Subject: quoted\r\n\r\n${"Received: from a by b\r\n".repeat(20)}.\r\n`);
  assert.deepEqual(codes(output), ["250 2.0.0"]);
});

// ---- From: ownership on submission --------------------------------------------------------------------

const FROM_CASES: [string, string][] = [
  ["From: Alice <alice@example.org>\r\n", "250 2.0.0"],
  ["From: alice+news@example.org\r\n", "250 2.0.0"],
  ["From: someone@alice.example\r\n", "250 2.0.0"],
  ["From: ALICE@EXAMPLE.ORG\r\n", "250 2.0.0"],
  ["Subject: no From at all\r\n", "250 2.0.0"],
  ["From: Bob <bob@example.org>\r\n", "553 5.7.1"],
  ['From: "alice@example.org" <mallory@evil.example>\r\n', "553 5.7.1"],
  ["From: mallory@evil.example (alice@example.org)\r\n", "553 5.7.1"],
  ["From: alice@example.org, bob@example.org\r\n", "553 5.7.1"],
  ["From: Alice\r\n <bob@example.org>\r\n", "553 5.7.1"],
  ["From : bob@example.org\r\n", "553 5.7.1"],
  ["from: bob@example.org\r\n", "553 5.7.1"],
  ["From: undisclosed\r\n", "550 5.6.0"],
  ["From: alice@example.org\r\nFrom: bob@example.org\r\n", "553 5.7.1"],
  // Sender: names who sent it (RFC 5322 §3.6.2): as much a claim as From:.
  ["From: alice@example.org\r\nSender: alice.smith@example.org\r\n", "250 2.0.0"],
  ["From: alice@example.org\r\nSender: bob@example.org\r\n", "553 5.7.1"],
  ["SENDER : Boss <bob@example.org>\r\n", "553 5.7.1"],
  // Names that are no field to a strict reader but a From: to a lenient one (mailparser trims
  // names with trim(), takes a missing colon from the continuation line; others drop NULs).
  ["From\x0b: bob@example.org\r\n", "550 5.6.0"],
  ["From\f: bob@example.org\r\n", "550 5.6.0"],
  ["From\xa0: bob@example.org\r\n", "550 5.6.0"],
  ["Fr\x00om: bob@example.org\r\n", "550 5.6.0"],
  ["From\r\n : bob@example.org\r\n", "550 5.6.0"],
  ["Sender\x0b: bob@example.org\r\n", "550 5.6.0"],
  ["Subject: a NUL \x00 in a value\r\n", "550 5.6.0"],
  // Folding and obsolete syntax a strict parser reads the same way we do.
  ["From:\r\n bob@example.org\r\n", "553 5.7.1"],
  ["From\t: bob@example.org\r\n", "553 5.7.1"],
  ["X-Junk line without a colon\r\nFrom: bob@example.org\r\n", "553 5.7.1"],
  ["X-From: bob@example.org\r\nReply-To: bob@example.org\r\n", "250 2.0.0"],
];

for (const [headers, expected] of FROM_CASES) {
  const shown = JSON.stringify(headers).replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
  test(`submission as alice, ${shown} → ${expected}`, async () => {
    const h = await ready({ mode: "submission" });
    const spool = await h.toData({ to: ["friend@remote.example"] });
    const { output } = await h.data(Buffer.from(`${headers}Subject: hi\r\n\r\nbody\r\n.\r\n`, "latin1"));
    assert.deepEqual(codes(output), [expected]);
    assert.equal(spool.commits, expected === "250 2.0.0" ? 1 : 0);
    assert.equal(spool.aborts, expected === "250 2.0.0" ? 0 : 1);
    if (expected.startsWith("553")) assert.match(output.replies[0]!.lines[0]!, /(From|Sender): header address rejected: not owned by user alice@example\.org$/);
  });
}

test("submission: a header section longer than headerBytes (it could hide a From:) → 552 5.3.4", async () => {
  const h = await ready({ mode: "submission", limits: { headerBytes: 4096 } });
  const spool = await h.toData({ to: ["friend@remote.example"] });
  const padding = `X-Padding: ${"p".repeat(70)}\r\n`.repeat(80);
  const { output } = await h.data(`From: alice@example.org\r\n${padding}From: bob@example.org\r\n\r\nbody\r\n.\r\n`);
  assert.deepEqual(codes(output), ["552 5.3.4"]);
  assert.equal([spool.commits, spool.aborts].join(), "0,1");
});

test("submission: a header section just under headerBytes is read whole and accepted", async () => {
  const h = await ready({ mode: "submission", limits: { headerBytes: 4096 } });
  await h.toData({ to: ["friend@remote.example"] });
  const padding = `X-Padding: ${"p".repeat(70)}\r\n`.repeat(45);
  const { output } = await h.data(`From: alice@example.org\r\n${padding}\r\nbody\r\n.\r\n`);
  assert.deepEqual(codes(output), ["250 2.0.0"]);
});

test("mta: a header section longer than headerBytes is still accepted (nothing to check in it)", async () => {
  const h = await ready({ mode: "mta", limits: { headerBytes: 4096 } });
  await h.toData();
  const padding = `X-Padding: ${"p".repeat(70)}\r\n`.repeat(80);
  const { output } = await h.data(`From: x@remote.example\r\n${padding}\r\nbody\r\n.\r\n`);
  assert.deepEqual(codes(output), ["250 2.0.0"]);
});

test("issue 11.2: an authenticated client on the mta listener is held to its From: and Sender: too", async () => {
  const h = await ready({ mode: "mta", tls: true }, "alice@example.org");
  await h.toData({ to: ["friend@remote.example"] });
  const { output } = await h.data("From: bob@example.org\r\n\r\nbody\r\n.\r\n");
  assert.deepEqual(codes(output), ["553 5.7.1"]);
  await h.toData({ to: ["friend@remote.example"] });
  assert.deepEqual(codes((await h.data("From: alice@example.org\r\nSender: bob@example.org\r\n\r\nbody\r\n.\r\n")).output), ["553 5.7.1"]);
  await h.toData({ to: ["friend@remote.example"] });
  assert.deepEqual(codes((await h.data("From: alice@example.org\r\n\r\nbody\r\n.\r\n")).output), ["250 2.0.0"]);
});

test("issue 11.2: on the mta listener an authenticated client's oversized header section is refused too", async () => {
  const h = await ready({ mode: "mta", tls: true, limits: { headerBytes: 4096 } }, "alice@example.org");
  await h.toData({ to: ["friend@remote.example"] });
  const padding = `X-Padding: ${"p".repeat(70)}\r\n`.repeat(80);
  const { output } = await h.data(`From: alice@example.org\r\n${padding}From: bob@example.org\r\n\r\nbody\r\n.\r\n`);
  assert.deepEqual(codes(output), ["552 5.3.4"]);
});

test("the mta listener checks nothing for an unauthenticated client (no login to hold to an address)", async () => {
  const h = await ready({ mode: "mta" });
  await h.toData({ from: "someone@remote.example" });
  const { output } = await h.data(Buffer.from("From\x0b: bob@example.org\r\nSender: x@y.example\r\nX-Nul: \x00\r\n\r\nbody\r\n.\r\n", "latin1"));
  assert.deepEqual(codes(output), ["250 2.0.0"]);
});

test("content starting with white space is body to every next hop: the checks read it as body too", async () => {
  const h = await ready({ mode: "submission" });
  const spool = await h.toData({ to: ["friend@remote.example"] });
  const { output } = await h.data(" folded\r\nFrom: bob@example.org\r\n\r\nbody\r\n.\r\n");
  assert.deepEqual(codes(output), ["250 2.0.0"]);
  // Our header section (with the Date: and Message-ID: it lacked) ends before the client's bytes.
  assert.match(spool.text, /\r\nDate: [^\r]+\r\nMessage-ID: <[^\r]+>\r\n\r\n folded\r\nFrom: bob@example\.org\r\n/);
});

test("a Sender: refusal names the Sender: field", async () => {
  const h = await ready({ mode: "submission" });
  await h.toData({ to: ["friend@remote.example"] });
  const { output } = await h.data("From: alice@example.org\r\nSender: bob@example.org\r\n\r\nbody\r\n.\r\n");
  assert.equal(output.replies[0]!.lines[0], "<bob@example.org>: Sender: header address rejected: not owned by user alice@example.org");
});

test("a refused From: is logged with the reason", async () => {
  const h = await ready({ mode: "submission" });
  await h.toData({ to: ["friend@remote.example"] });
  await h.data("From: bob@example.org\r\n\r\nbody\r\n.\r\n");
  const entry = h.logs.find((l) => l.fields.event === "data-refused");
  assert.equal(entry?.fields.reason, "From: header bob@example.org not owned by alice@example.org");
});

// ---- our trace fields cannot be extended by the client ---------------------------------------------

for (const first of [" by evil.example with ESMTPSA\r\n", "\t(using TLSv1.3)\r\n"]) {
  test(`a message starting with white space (${JSON.stringify(first)}) cannot fold into our Received:`, async () => {
    const h = await ready({ mode: "mta" });
    const spool = await h.toData();
    const { output } = await h.data(`${first}Subject: x\r\n\r\nhi\r\n.\r\n`);
    assert.deepEqual(codes(output), ["250 2.0.0"]);
    assert.doesNotMatch(ourReceived(spool.text), /evil|using/);
    assert.ok(spool.text.endsWith(`${first}Subject: x\r\n\r\nhi\r\n`), "the client's bytes are kept, below our header section");
  });
}
