/**
 * MAIL and RCPT on their own (src/smtp/mail-transaction.ts), with ports that allow everything:
 * the submission gate, the SIZE limit, the recipients limit and the envelope they build.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { addRecipient, startTransaction, type EnvelopeContext } from "../../src/smtp/mail-transaction.js";
import type { SessionPorts, SessionSettings } from "../../src/smtp/session-types.js";

const allow = { allow: true as const };
const ports = {
  log: { info: () => undefined, warn: () => undefined },
  account: async () => null,
  checkSender: async () => allow,
  checkRecipient: async () => allow,
} as unknown as SessionPorts;

function context(over: Partial<EnvelopeContext> = {}, settings: Partial<SessionSettings> = {}): EnvelopeContext {
  return {
    settings: {
      mode: "mta",
      authWithoutTls: false,
      postmaster: "postmaster@example.org",
      limits: { messageSize: 100, recipients: 2 },
      ...settings,
    } as SessionSettings,
    ports,
    policy: { ip: "198.51.100.7", mode: settings.mode ?? "mta" },
    tls: false,
    esmtp: true,
    authOffered: false,
    ...over,
  };
}

const code = (r: { code: number; enhanced?: string }) => `${r.code} ${r.enhanced}`;

test("MAIL on a submission port: 530 before TLS, then 530 before AUTH (RFC 6409 §4.3)", async () => {
  assert.equal(code((await startTransaction(context({}, { mode: "submission" }), "<a@example.org>", "")).reply), "530 5.7.0");
  const tls = context({ tls: true }, { mode: "submission" });
  assert.match((await startTransaction(tls, "<a@example.org>", "")).reply.lines[0]!, /Authentication required/);
});

test("MAIL with a SIZE over the limit: 552 5.3.4 (RFC 1870 §6.2); within it: a transaction", async () => {
  assert.equal(code((await startTransaction(context(), "<a@example.org>", "SIZE=101")).reply), "552 5.3.4");
  const ok = await startTransaction(context(), "<a@example.org>", "SIZE=100");
  assert.equal(code(ok.reply), "250 2.1.0");
  assert.deepEqual([ok.tx?.sender.address, ok.tx?.recipients, ok.tx?.senderVouched], ["a@example.org", [], false]);
});

test("RCPT: a recipient once, the one past the limit 452 4.5.3, <Postmaster> as our postmaster", async () => {
  const ctx = context();
  const { tx } = await startTransaction(ctx, "<>", "");
  assert.ok(tx);
  assert.equal(code(await addRecipient(ctx, tx, "<Postmaster>", "")), "250 2.1.5");
  assert.equal(code(await addRecipient(ctx, tx, "<postmaster@example.org>", "")), "250 2.1.5");
  assert.equal(code(await addRecipient(ctx, tx, "<b@example.org>", "")), "250 2.1.5");
  assert.deepEqual(
    tx.recipients.map((r) => r.address),
    ["postmaster@example.org", "b@example.org"],
  );
  assert.equal(code(await addRecipient(ctx, tx, "<c@example.org>", "")), "452 4.5.3");
});
