/**
 * Bounded conversations (SECURITY rule 3): the error and junk-command limits, the replies that end
 * a connection, and the answers that must not tell an attacker anything (VRFY, rule 14).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Harness, codes, ready } from "./session-helpers.js";

test("after `errors` error replies: the last one, then 421 4.7.0 and close", async () => {
  const h = await ready({ mode: "mta", limits: { errors: 3 } });
  await h.expect(["XYZZY 1", "500 5.5.1"], ["RCPT TO:<bob@example.org>", "503 5.5.1"]);
  const out = await h.send("EXPN staff");
  assert.deepEqual(codes(out), ["502 5.5.1", "421 4.7.0"]);
  assert.equal(out.action, "close");
  assert.match(out.replies[1]!.lines[0]!, /^mx\.example\.org Error: too many errors$/);
  assert.deepEqual(await h.send("NOOP"), { replies: [] });
});

test("every kind of refusal counts as an error: syntax, sequence, policy, parameters", async () => {
  const h = await ready({ mode: "mta", limits: { errors: 5 } });
  await h.expect(
    ["MAIL FROM:<> FOO=1", "555 5.5.4"],
    ["MAIL FROM:<>", "250 2.1.0"],
    ["RCPT TO:<x@remote.example>", "554 5.7.1"],
    ["RCPT TO:<nobody@example.org>", "550 5.1.1"],
    ["RCPT TO:bob", "501 5.5.2"],
    ["DATA", "554 5.5.1 | 421 4.7.0 | +close"],
  );
});

test("positive replies never count as errors", async () => {
  const h = await ready({ mode: "mta", limits: { errors: 1, junkCommands: 1000 } });
  for (let i = 0; i < 30; i++) await h.expect(["EHLO client.example.net", "250"], ["MAIL FROM:<>", "250 2.1.0"], ["RSET", "250 2.0.0"]);
});

test("a refused DATA phase counts as an error", async () => {
  const h = await ready({ mode: "mta", limits: { errors: 2, messageSize: 1024 } });
  await h.expect(["XYZZY 1", "500 5.5.1"]);
  await h.toData();
  const { output } = await h.data(`Subject: x\r\n\r\n${"x\r\n".repeat(600)}.\r\n`);
  assert.deepEqual(codes(output), ["552 5.3.4", "421 4.7.0"]);
  assert.equal(output.action, "close");
});

test("the error count starts again after a message is accepted (as Postfix does)", async () => {
  const h = await ready({ mode: "mta", limits: { errors: 3 } });
  await h.expect(["XYZZY 1", "500 5.5.1"], ["XYZZY 1", "500 5.5.1"]);
  await h.toData();
  await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
  await h.expect(["XYZZY 1", "500 5.5.1"], ["XYZZY 1", "500 5.5.1"]);
  await h.expect(["XYZZY 1", "500 5.5.1 | 421 4.7.0 | +close"]);
});

for (const junk of ["NOOP", "RSET", "VRFY alice", "EXPN staff", "HELP"]) {
  test(`${junk.split(" ")[0]} is a junk command: past junkCommands → 421 4.7.0 and close`, async () => {
    const h = await ready({ mode: "mta", limits: { junkCommands: 3, errors: 100 } });
    for (let i = 0; i < 3; i++) assert.doesNotMatch(await h.cmd(junk), /421|close/);
    const out = await h.send(junk);
    assert.deepEqual([codes(out), out.action], [["421 4.7.0"], "close"]);
    assert.match(out.replies[0]!.lines[0]!, /too many junk commands$/);
  });
}

test("EHLO, MAIL, RCPT and DATA are not junk", async () => {
  const h = await ready({ mode: "mta", limits: { junkCommands: 1 } });
  for (let i = 0; i < 5; i++) {
    await h.expect(["EHLO client.example.net", "250"], ["MAIL FROM:<>", "250 2.1.0"], ["RCPT TO:<bob@example.org>", "250 2.1.5"]);
  }
});

test("the junk count starts again after a message is accepted (a RSET per message is normal)", async () => {
  const h = await ready({ mode: "mta", limits: { junkCommands: 3 } });
  for (let i = 0; i < 10; i++) {
    await h.expect(["RSET", "250 2.0.0"], ["NOOP", "250 2.0.0"]);
    await h.toData();
    const { output } = await h.data("Subject: x\r\n\r\nhi\r\n.\r\n");
    assert.deepEqual(codes(output), ["250 2.0.0"], `message ${i + 1}`);
  }
});

test("QUIT → 221 2.0.0 and close, in any state", async () => {
  for (const setup of [[], ["EHLO client.example.net"], ["EHLO client.example.net", "MAIL FROM:<>"]]) {
    const h = new Harness();
    for (const l of setup) await h.send(l);
    await h.expect(["QUIT", "221 2.0.0 | +close"]);
  }
});

test("VRFY answers 252 whether the mailbox exists or not (no user enumeration)", async () => {
  const h = await ready({ mode: "mta" });
  const known = await h.send("VRFY alice@example.org");
  const unknown = await h.send("VRFY nobody@example.org");
  assert.deepEqual(known, unknown);
  assert.deepEqual(codes(known), ["252 2.0.0"]);
});

test("HELP → 214 2.0.0 listing the commands", async () => {
  const out = await new Harness().send("HELP");
  assert.deepEqual(codes(out), ["214 2.0.0"]);
  assert.match(out.replies[0]!.lines[0]!, /EHLO.*STARTTLS.*AUTH.*MAIL.*RCPT.*DATA.*QUIT/);
});

for (const kind of ["too-long", "bare-lf", "bare-cr"] as const) {
  test(`a command line the connection could not take (${kind}) → 500 5.5.2 and close`, () => {
    const out = new Harness().session.lineError(kind);
    assert.deepEqual([codes(out), out.action], [["500 5.5.2"], "close"]);
  });
}

test("a client out of sync → 554 5.5.0 and close", () => {
  const out = new Harness().session.outOfSync("DATA");
  assert.deepEqual([codes(out), out.action], [["554 5.5.0"], "close"]);
  assert.equal(out.replies[0]!.lines[0], "Error: SMTP protocol synchronization (data sent after DATA)");
});

test("command replies never echo what the client sent", async () => {
  const h = await ready({ mode: "mta" });
  for (const line of ["XYZZY <script>", "MAIL FROM:<> X-EVIL=<script>", "VRFY <script>@example.org"]) {
    const out = await h.send(line);
    for (const r of out.replies) assert.doesNotMatch(r.lines.join(" "), /script|XYZZY/i, line);
  }
});
