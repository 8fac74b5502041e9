/**
 * The session state machine, table-driven: every command in every state, the listener modes, and
 * what the STARTTLS handshake makes the session forget. AUTH, MAIL/RCPT, DATA and the limits have
 * their own files (session-*.test.ts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Harness, HOST, MECHANISMS, USERS, TRUSTED_IP, codes, plain, ready, type HarnessOptions } from "./session-helpers.js";

// ---- every command in every state -------------------------------------------------------------

type State = "before EHLO" | "after EHLO" | "in MAIL" | "after RCPT" | "after TLS" | "during AUTH exchange" | "after AUTH";

/** Brings a fresh mta session (STARTTLS available, AUTH after TLS) into the state. */
const setups: Record<State, (h: Harness) => Promise<void>> = {
  "before EHLO": async () => {},
  "after EHLO": async (h) => void (await h.ehlo()),
  "in MAIL": async (h) => {
    await h.ehlo();
    await h.expect(["MAIL FROM:<>", "250 2.1.0"]);
  },
  "after RCPT": async (h) => {
    await h.ehlo();
    await h.expect(["MAIL FROM:<>", "250 2.1.0"], ["RCPT TO:<bob@example.org>", "250 2.1.5"]);
  },
  "after TLS": async (h) => {
    await h.ehlo();
    await h.startTls();
  },
  "during AUTH exchange": async (h) => {
    await h.ehlo();
    await h.startTls();
    await h.ehlo();
    await h.expect(["AUTH PLAIN", "334"]);
  },
  "after AUTH": async (h) => {
    await h.ehlo();
    await h.startTls();
    await h.ehlo();
    await h.login();
  },
};
const STATES = Object.keys(setups) as State[];

const COMMANDS = {
  EHLO: "EHLO client.example.net",
  HELO: "HELO client.example.net",
  STARTTLS: "STARTTLS",
  AUTH: `AUTH PLAIN ${plain("alice@example.org", USERS["alice@example.org"]!.password)}`,
  MAIL: "MAIL FROM:<>",
  RCPT: "RCPT TO:<bob@example.org>",
  DATA: "DATA",
  RSET: "RSET",
  NOOP: "NOOP",
  QUIT: "QUIT",
  VRFY: "VRFY alice",
  EXPN: "EXPN staff",
  HELP: "HELP",
  UNKNOWN: "XYZZY 10",
  HTTP: "GET / HTTP/1.1",
  EMPTY: "",
} as const;
type Command = keyof typeof COMMANDS;

/**
 * Expected replies, in the order of STATES. "code enhanced" plus an optional "~text" fragment of
 * the reply; "+close"/"+starttls" for the action. During an AUTH exchange every line is the
 * client's SASL response: none of these is a valid PLAIN message, so each ends the exchange 501.
 */
const SASL_JUNK = "501 5.5.2 ~malformed authentication response";
const NOT_BASE64 = "501 5.5.2 ~invalid base64";
/** The same reply in every state except during an AUTH exchange. */
const row = (e: string, duringAuth: string): string[] => [e, e, e, e, e, duringAuth, e];
const TABLE: Record<Command, string[]> = {
  EHLO: row("250", NOT_BASE64),
  HELO: row("250", NOT_BASE64),
  STARTTLS: [
    "503 5.5.1 ~send EHLO first",
    "220 2.0.0 +starttls",
    "220 2.0.0 +starttls",
    "220 2.0.0 +starttls",
    "554 5.5.1 ~TLS already active",
    SASL_JUNK,
    "554 5.5.1 ~TLS already active",
  ],
  AUTH: [
    "503 5.5.1 ~send EHLO first",
    "503 5.5.1 ~use port 587",
    "503 5.5.1 ~use port 587",
    "503 5.5.1 ~use port 587",
    "503 5.5.1 ~send EHLO first",
    NOT_BASE64,
    "503 5.5.1 ~already authenticated",
  ],
  MAIL: [
    "503 5.5.1 ~send HELO/EHLO first",
    "250 2.1.0",
    "503 5.5.1 ~nested MAIL",
    "503 5.5.1 ~nested MAIL",
    "503 5.5.1 ~send HELO/EHLO first",
    NOT_BASE64,
    "250 2.1.0",
  ],
  RCPT: ["503 5.5.1 ~need MAIL", "503 5.5.1 ~need MAIL", "250 2.1.5", "250 2.1.5", "503 5.5.1 ~need MAIL", NOT_BASE64, "503 5.5.1 ~need MAIL"],
  DATA: ["503 5.5.1 ~need MAIL", "503 5.5.1 ~need MAIL", "503 5.5.1 ~need RCPT", "354", "503 5.5.1 ~need MAIL", SASL_JUNK, "503 5.5.1 ~need MAIL"],
  RSET: row("250 2.0.0", SASL_JUNK),
  NOOP: row("250 2.0.0", SASL_JUNK),
  QUIT: row("221 2.0.0 +close", SASL_JUNK),
  VRFY: row("252 2.0.0", NOT_BASE64),
  EXPN: row("502 5.5.1 ~EXPN is disabled", NOT_BASE64),
  HELP: row("214 2.0.0", SASL_JUNK),
  UNKNOWN: row("500 5.5.1 ~Command unrecognized", NOT_BASE64),
  HTTP: row("221 2.7.0 +close", NOT_BASE64),
  EMPTY: row("500 5.5.2 ~Empty command", SASL_JUNK),
};

for (const [command, row] of Object.entries(TABLE) as [Command, string[]][]) {
  STATES.forEach((state, i) => {
    const expected = row[i]!;
    test(`${state}: ${command} → ${expected}`, async () => {
      const h = new Harness({ mode: "mta" });
      await setups[state](h);
      const out = await h.send(COMMANDS[command]);
      const [head, fragment] = expected.split(" ~") as [string, string | undefined];
      const wanted = head.split(" +");
      assert.equal(codes(out).join(" | "), wanted[0]);
      assert.equal(out.action, wanted[1] as typeof out.action);
      if (fragment) assert.ok(out.replies[0]!.lines.join("\n").includes(fragment), `"${out.replies[0]!.lines[0]}" lacks "${fragment}"`);
      // Whatever happened, an AUTH exchange is over after one bad response.
      if (state === "during AUTH exchange") assert.equal(h.session.expecting, "command");
    });
  });
}

test("the greeting is 220 with the host name and no enhanced code", () => {
  const r = new Harness().session.greeting();
  assert.deepEqual(r, { code: 220, enhanced: undefined, lines: [`${HOST} ESMTP Postern`] });
});

test("EHLO answers with the host name, the client's name and IP, then the extensions", async () => {
  const h = new Harness({ mode: "mta", limits: { messageSize: 12345 } });
  const out = await h.send("EHLO client.example.net");
  assert.equal(out.replies[0]!.lines[0], `${HOST} Hello client.example.net [198.51.100.7]`);
  assert.deepEqual(out.replies[0]!.lines.slice(1), ["PIPELINING", "SIZE 12345", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN", "CHUNKING", "STARTTLS"]);
});

test("HELO answers with one line and no extensions", async () => {
  const out = await new Harness().send("HELO client.example.net");
  assert.deepEqual(out.replies[0]!.lines, [`${HOST} Hello client.example.net [198.51.100.7]`]);
});

test("EHLO with an invalid name is 501 5.5.4 and does not count as a greeting", async () => {
  const h = new Harness();
  await h.expect(["EHLO bad_name!", "501 5.5.4"], ["MAIL FROM:<>", "503 5.5.1"]);
});

for (const [name, lines] of [
  ["RSET", ["RSET"]],
  ["EHLO", ["EHLO again.example.net"]],
  ["HELO", ["HELO again.example.net"]],
] as const) {
  test(`${name} ends the mail transaction (RFC 5321 §4.1.4)`, async () => {
    const h = new Harness();
    await h.ehlo();
    await h.expect(["MAIL FROM:<>", "250 2.1.0"], ["RCPT TO:<bob@example.org>", "250 2.1.5"]);
    for (const l of lines) await h.send(l);
    await h.expect(["DATA", "503 5.5.1"], ["RCPT TO:<bob@example.org>", "503 5.5.1"], ["MAIL FROM:<>", "250 2.1.0"]);
  });
}

test("after QUIT the session answers nothing more", async () => {
  const h = new Harness();
  await h.expect(["QUIT", "221 2.0.0 | +close"]);
  assert.deepEqual(await h.send("EHLO client.example.net"), { replies: [] });
});

for (const line of ["GET / HTTP/1.1", "POST /login HTTP/1.0", "CONNECT mx.example.org:25 HTTP/1.1", "Host: mx.example.org", "User-Agent: curl/8"]) {
  test(`an HTTP line closes the connection: ${line}`, async () => {
    const h = new Harness();
    await h.ehlo();
    await h.expect([line, "221 2.7.0 | +close"]);
    assert.ok(h.logs.some((l) => l.level === "warn" && l.fields.kind === "http"));
    assert.deepEqual(await h.send("NOOP"), { replies: [] });
  });
}

// ---- listener modes ---------------------------------------------------------------------------

interface ModeCase {
  name: string;
  opts: HarnessOptions;
  /** After the first EHLO: STARTTLS then EHLO again. */
  starttls?: boolean;
  ehloHas: string[];
  ehloLacks: string[];
  auth: string;
  mail: string;
}

const AUTH_LINE = `AUTH ${MECHANISMS.join(" ")}`;
const MODE_CASES: ModeCase[] = [
  {
    name: "submission before TLS",
    opts: { mode: "submission" },
    ehloHas: ["STARTTLS"],
    ehloLacks: ["AUTH"],
    auth: "530 5.7.0 Must issue a STARTTLS command first",
    mail: "530 5.7.0 Must issue a STARTTLS command first",
  },
  {
    name: "submission after STARTTLS",
    opts: { mode: "submission" },
    starttls: true,
    ehloHas: [AUTH_LINE],
    ehloLacks: ["STARTTLS"],
    auth: "235 2.7.0 Authentication successful",
    mail: "530 5.7.0 Authentication required",
  },
  {
    name: "submission from mynetworks (never a relay exemption)",
    opts: { mode: "submission", remoteIp: TRUSTED_IP },
    starttls: true,
    ehloHas: [AUTH_LINE],
    ehloLacks: ["STARTTLS"],
    auth: "235 2.7.0 Authentication successful",
    mail: "530 5.7.0 Authentication required",
  },
  {
    name: "submissions (implicit TLS)",
    opts: { mode: "submissions" },
    ehloHas: [AUTH_LINE],
    ehloLacks: ["STARTTLS"],
    auth: "235 2.7.0 Authentication successful",
    mail: "530 5.7.0 Authentication required",
  },
  {
    name: "submission with authWithoutTls",
    opts: { mode: "submission", authWithoutTls: true },
    ehloHas: ["STARTTLS", AUTH_LINE],
    ehloLacks: [],
    auth: "235 2.7.0 Authentication successful",
    mail: "530 5.7.0 Authentication required",
  },
  {
    name: "mta before TLS",
    opts: { mode: "mta" },
    ehloHas: ["STARTTLS"],
    ehloLacks: ["AUTH"],
    auth: "503 5.5.1 Error: AUTH not available here; use port 587 (STARTTLS) or 465",
    mail: "250 2.1.0 Ok",
  },
  {
    name: "mta after STARTTLS",
    opts: { mode: "mta" },
    starttls: true,
    ehloHas: [AUTH_LINE],
    ehloLacks: ["STARTTLS"],
    auth: "235 2.7.0 Authentication successful",
    mail: "250 2.1.0 Ok",
  },
  {
    name: "mta with AUTH disabled, after STARTTLS",
    opts: { mode: "mta", authEnabled: false },
    starttls: true,
    ehloHas: [],
    ehloLacks: ["AUTH", "STARTTLS"],
    auth: "503 5.5.1 Error: AUTH not available here; use port 587 (STARTTLS) or 465",
    mail: "250 2.1.0 Ok",
  },
  {
    name: "mta with authWithoutTls",
    opts: { mode: "mta", authWithoutTls: true },
    ehloHas: ["STARTTLS", AUTH_LINE],
    ehloLacks: [],
    auth: "235 2.7.0 Authentication successful",
    mail: "250 2.1.0 Ok",
  },
  {
    name: "mta without a certificate",
    opts: { mode: "mta", tlsAvailable: false },
    ehloHas: [],
    ehloLacks: ["AUTH", "STARTTLS"],
    auth: "503 5.5.1 Error: AUTH not available here; use port 587 (STARTTLS) or 465",
    mail: "250 2.1.0 Ok",
  },
];

async function modeSession(c: ModeCase): Promise<{ h: Harness; ext: string[] }> {
  const h = new Harness(c.opts);
  let ext = await h.ehlo();
  if (c.starttls) {
    await h.startTls();
    ext = await h.ehlo();
  }
  return { h, ext };
}

const full = (out: { replies: { code: number; enhanced?: string; lines: string[] }[] }) =>
  out.replies.map((r) => [r.code, r.enhanced, ...r.lines].filter((x) => x !== undefined).join(" ")).join(" | ");

for (const c of MODE_CASES) {
  test(`${c.name}: EHLO lists ${c.ehloHas.join(", ") || "neither AUTH nor STARTTLS"}${c.ehloLacks.length ? `, not ${c.ehloLacks.join(", ")}` : ""}`, async () => {
    const { ext } = await modeSession(c);
    for (const e of c.ehloHas) assert.ok(ext.includes(e), `EHLO lacks ${e}: ${ext.join(", ")}`);
    for (const e of c.ehloLacks) assert.ok(!ext.some((x) => x.split(" ")[0] === e), `EHLO offers ${e}: ${ext.join(", ")}`);
  });
  test(`${c.name}: AUTH PLAIN → ${c.auth}`, async () => {
    const { h } = await modeSession(c);
    assert.equal(full(await h.send(COMMANDS.AUTH)), c.auth);
  });
  test(`${c.name}: MAIL before AUTH → ${c.mail}`, async () => {
    const { h } = await modeSession(c);
    assert.equal(full(await h.send("MAIL FROM:<alice@example.org>")), c.mail);
  });
}

test("mta without a certificate: STARTTLS is 502 5.5.1", async () => {
  const h = new Harness({ tlsAvailable: false });
  await h.ehlo();
  await h.expect(["STARTTLS", "502 5.5.1"]);
});

test("after AUTH, EHLO no longer offers AUTH", async () => {
  const h = new Harness({ mode: "submissions" });
  await h.ehlo();
  await h.login();
  assert.ok(!(await h.ehlo()).some((e) => e.startsWith("AUTH")));
});

for (const mode of ["submission", "submissions"] as const) {
  test(`${mode}: after AUTH, MAIL and a remote RCPT are accepted`, async () => {
    const h = await ready({ mode });
    await h.expect(["MAIL FROM:<alice@example.org>", "250 2.1.0"], ["RCPT TO:<friend@remote.example>", "250 2.1.5"]);
  });
}

// ---- STARTTLS makes the session forget (RFC 3207 §4.2) ------------------------------------------

test("tlsStarted forgets the EHLO: MAIL and AUTH need a new EHLO", async () => {
  const h = new Harness();
  await h.ehlo();
  await h.startTls();
  await h.expect(["MAIL FROM:<>", "503 5.5.1"], ["AUTH PLAIN " + plain("alice@example.org", "alice-secret"), "503 5.5.1"]);
  await h.ehlo();
  await h.expect(["MAIL FROM:<>", "250 2.1.0"]);
});

test("tlsStarted forgets an AUTH made in clear (authWithoutTls)", async () => {
  const h = new Harness({ mode: "submission", authWithoutTls: true });
  await h.ehlo();
  await h.login();
  await h.startTls();
  assert.equal(h.session.authenticatedUser, null);
  const ext = await h.ehlo();
  assert.ok(ext.includes(AUTH_LINE), "AUTH is offered again");
  await h.expect(["MAIL FROM:<alice@example.org>", "530 5.7.0"]);
  await h.login();
});

test("tlsStarted forgets the mail transaction", async () => {
  const h = new Harness();
  await h.ehlo();
  await h.expect(["MAIL FROM:<>", "250 2.1.0"], ["RCPT TO:<bob@example.org>", "250 2.1.5"]);
  await h.startTls();
  await h.ehlo();
  await h.expect(["RCPT TO:<bob@example.org>", "503 5.5.1"], ["DATA", "503 5.5.1"], ["MAIL FROM:<>", "250 2.1.0"]);
});

test("tlsStarted: EHLO no longer offers STARTTLS and a second STARTTLS is 554 5.5.1", async () => {
  const h = new Harness();
  await h.ehlo();
  await h.startTls();
  assert.ok(!(await h.ehlo()).includes("STARTTLS"));
  await h.expect(["STARTTLS", "554 5.5.1"]);
});

test("EHLO with an address literal is accepted and the literal is the HELO name", async () => {
  const h = new Harness();
  await h.expect(["EHLO [192.0.2.1]", "250"]);
  const spool = await h.toData({ from: "x@remote.example", to: ["bob@example.org"] });
  await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
  assert.match(spool.text, /^Received: from \[192\.0\.2\.1\] \(\[198\.51\.100\.7\]\)/);
  assert.equal(spool.envelope!.client.helo, "[192.0.2.1]");
});

test("354 carries no enhanced code (RFC 3463 has no class 3)", async () => {
  const h = new Harness();
  await h.ehlo();
  await h.expect(["MAIL FROM:<>", "250 2.1.0"], ["RCPT TO:<bob@example.org>", "250 2.1.5"]);
  const out = await h.send("DATA");
  assert.deepEqual(out.replies, [{ code: 354, enhanced: undefined, lines: ["End data with <CR><LF>.<CR><LF>"] }]);
});

test("EHLO after AUTH keeps the login (only STARTTLS forgets it)", async () => {
  const h = new Harness({ mode: "submissions" });
  await h.ehlo();
  await h.login();
  await h.ehlo();
  assert.equal(h.session.authenticatedUser, "alice@example.org");
  await h.expect(["MAIL FROM:<alice@example.org>", "250 2.1.0"]);
});
