/**
 * REQUIRETLS in the session (RFC 8689): offered only on a TLS-protected session (§2), the MAIL
 * parameter refused where it was not offered, and the two tags (§4.1) in the envelope the store
 * commits, by DATA and by BDAT alike.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Harness, codes, ready } from "../smtp/session-helpers.js";

const WITH_HEADER = "From: alice@example.org\r\nTLS-Required: No\r\nSubject: cert problem\r\n\r\nYour certificate expired.\r\n";

async function overStartTls(opts: ConstructorParameters<typeof Harness>[0] = {}): Promise<Harness> {
  const h = await ready(opts);
  await h.startTls();
  await h.ehlo();
  return h;
}

/** One whole message by BDAT LAST; returns the reply codes. */
async function bdatLast(h: Harness, message: string): Promise<string[]> {
  const bytes = Buffer.from(message, "utf8");
  assert.deepEqual((await h.send(`BDAT ${bytes.length} LAST`)).replies, []);
  const out = await h.session.receiveChunk(bytes);
  assert.ok(out);
  return codes(out);
}

test("port 25 in clear: no REQUIRETLS in EHLO, and MAIL's REQUIRETLS is an unknown parameter (555 5.5.4)", async () => {
  const h = await ready();
  assert.ok(!(await h.ehlo()).includes("REQUIRETLS"));
  assert.equal(await h.cmd("MAIL FROM:<a@remote.test> REQUIRETLS"), "555 5.5.4");
  assert.equal(await h.cmd("MAIL FROM:<a@remote.test>"), "250 2.1.0", "the session goes on");
});

test("after STARTTLS REQUIRETLS is offered and accepted; a value is refused with 501 5.5.4", async () => {
  const h = await ready();
  await h.startTls();
  assert.ok((await h.ehlo()).includes("REQUIRETLS"));
  assert.equal(await h.cmd("MAIL FROM:<a@remote.test> REQUIRETLS=YES"), "501 5.5.4");
  assert.equal(await h.cmd("MAIL FROM:<a@remote.test> REQUIRETLS"), "250 2.1.0");
  assert.ok(
    h.logs.some((l) => l.fields.event === "mail" && l.fields.requireTls === true),
    "the MAIL log line says so",
  );
});

test("HELO after TLS: no service extensions, so no REQUIRETLS parameter either", async () => {
  const h = await overStartTls();
  assert.equal(await h.cmd("HELO client.example.net"), "250");
  assert.equal(await h.cmd("MAIL FROM:<a@remote.test> REQUIRETLS"), "555 5.5.4");
});

test("submission: offered on 465 and on 587 after STARTTLS, never on 587 in clear (authWithoutTls)", async () => {
  assert.ok((await new Harness({ mode: "submissions" }).ehlo()).includes("REQUIRETLS"));
  const h587 = await ready({ mode: "submission" }, "alice@example.org");
  assert.ok((await h587.ehlo()).includes("REQUIRETLS"));
  const clear = await ready({ mode: "submission", authWithoutTls: true }, "alice@example.org");
  assert.ok(!(await clear.ehlo()).includes("REQUIRETLS"));
  assert.equal(await clear.cmd("MAIL FROM:<alice@example.org> REQUIRETLS"), "555 5.5.4");
});

test("smtp.requireTls: false turns the offer off, even over TLS", async () => {
  const h = new Harness({ mode: "submissions" });
  h.settings.requireTls = false;
  assert.ok(!(await h.ehlo()).includes("REQUIRETLS"));
  await h.login();
  assert.equal(await h.cmd("MAIL FROM:<alice@example.org> REQUIRETLS"), "555 5.5.4");
});

test("MAIL REQUIRETLS tags the envelope; its TLS-Required: No is ignored but kept in the message (§4.1)", async () => {
  const h = await overStartTls();
  const spool = await h.toData({ from: "a@remote.test", mailParams: "REQUIRETLS" });
  assert.deepEqual(codes((await h.data(`${WITH_HEADER}.\r\n`)).output), ["250 2.0.0"]);
  const env = spool.envelope!;
  assert.equal(env.requireTls, true);
  assert.equal(env.tlsRequiredNo, undefined);
  assert.match(spool.text, /\r\nTLS-Required: No\r\n/);
  assert.ok(h.logs.some((l) => l.fields.event === "queued" && l.fields.requireTls === true));
});

test("TLS-Required: No without REQUIRETLS tags the envelope (DATA)", async () => {
  const h = await ready();
  const spool = await h.toData({ from: "a@remote.test" });
  assert.deepEqual(codes((await h.data(`${WITH_HEADER}.\r\n`)).output), ["250 2.0.0"]);
  assert.equal(spool.envelope!.tlsRequiredNo, true);
  assert.equal(spool.envelope!.requireTls, undefined);
  assert.ok(h.logs.some((l) => l.fields.event === "queued" && l.fields.tlsRequiredNo === true));
});

test("TLS-Required: No without REQUIRETLS tags the envelope (BDAT twin)", async () => {
  const h = await ready();
  await h.expect(["MAIL FROM:<a@remote.test>", "250 2.1.0"], ["RCPT TO:<bob@example.org>", "250 2.1.5"]);
  assert.deepEqual(await bdatLast(h, WITH_HEADER), ["250 2.0.0"]);
  assert.equal(h.queued[0]!.envelope.tlsRequiredNo, true);
});

test("BDAT with REQUIRETLS: the header is ignored, the envelope says REQUIRETLS", async () => {
  const h = await overStartTls();
  await h.expect(["MAIL FROM:<a@remote.test> REQUIRETLS", "250 2.1.0"], ["RCPT TO:<bob@example.org>", "250 2.1.5"]);
  assert.deepEqual(await bdatLast(h, WITH_HEADER), ["250 2.0.0"]);
  assert.equal(h.queued[0]!.envelope.requireTls, true);
  assert.equal(h.queued[0]!.envelope.tlsRequiredNo, undefined);
});

test("no tag from a field in the body, nor from content starting with white space (read as body by every hop)", async () => {
  const h = await ready();
  const inBody = await h.toData({ from: "a@remote.test" });
  await h.data("Subject: x\r\n\r\nTLS-Required: No\r\n.\r\n");
  assert.equal(inBody.envelope!.tlsRequiredNo, undefined);
  const spaced = await h.toData({ from: "a@remote.test" });
  await h.data(" x\r\nTLS-Required: No\r\n\r\nbody\r\n.\r\n");
  assert.equal(spaced.envelope!.tlsRequiredNo, undefined);
});

test("each transaction starts untagged: REQUIRETLS does not carry over to the next MAIL", async () => {
  const h = await overStartTls();
  const first = await h.toData({ from: "a@remote.test", mailParams: "REQUIRETLS" });
  await h.data("Subject: one\r\n\r\n.\r\n");
  const second = await h.toData({ from: "a@remote.test" });
  await h.data("Subject: two\r\n\r\n.\r\n");
  assert.equal(first.envelope!.requireTls, true);
  assert.equal(second.envelope!.requireTls, undefined);
});
