/**
 * The session's phases and the verb × phase table (src/smtp/session-phase.ts), read on their own:
 * what each verb gets in each command phase before its own conditions are checked.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { VERB_PHASES, greetedOrConnected, helloOf, phaseRefusal, transactionOf, type CommandPhase, type Phase } from "../../src/smtp/session-phase.js";
import { REFUSALS } from "../../src/smtp/refusals.js";
import type { Transaction } from "../../src/smtp/message-intake.js";

const hello = { name: "client.example.net", esmtp: true };
const tx = {
  sender: { address: "a@example.org" },
  params: {},
  recipients: [],
  refusedRecipients: 0,
  account: null,
  senderVouched: false,
} as unknown as Transaction;
const phases: Record<CommandPhase["kind"], CommandPhase> = {
  connected: { kind: "connected" },
  greeted: { kind: "greeted", hello },
  mail: { kind: "mail", hello, tx },
  // The message is never read here: only the kind matters to the table.
  bdat: { kind: "bdat", hello, tx, message: {} as never },
};
const codes = (verb: keyof typeof VERB_PHASES) =>
  Object.fromEntries(
    Object.values(phases).map((p) => {
      const r = phaseRefusal(verb, p);
      return [p.kind, r ? `${r.code} ${r.lines[0]}` : "ok"];
    }),
  );

test("MAIL: after HELO/EHLO and outside a transaction only", () => {
  assert.deepEqual(codes("MAIL"), {
    connected: "503 Error: send HELO/EHLO first",
    greeted: "ok",
    mail: "503 Error: nested MAIL command",
    bdat: "503 Error: nested MAIL command",
  });
});

test("RCPT and BDAT: inside a transaction; DATA: not after BDAT (RFC 3030 §3)", () => {
  for (const verb of ["RCPT", "BDAT"] as const) {
    assert.deepEqual(codes(verb), { connected: "503 Error: need MAIL command", greeted: "503 Error: need MAIL command", mail: "ok", bdat: "ok" });
  }
  assert.deepEqual(codes("DATA"), {
    connected: "503 Error: need MAIL command",
    greeted: "503 Error: need MAIL command",
    mail: "ok",
    bdat: "503 Error: DATA not allowed after BDAT",
  });
});

test("AUTH: after EHLO, not during a transaction (RFC 4954 §4); STARTTLS: after EHLO", () => {
  assert.deepEqual(codes("AUTH"), {
    connected: "503 Error: send EHLO first",
    greeted: "ok",
    mail: "503 Error: AUTH not permitted during a mail transaction",
    bdat: "503 Error: AUTH not permitted during a mail transaction",
  });
  assert.deepEqual(codes("STARTTLS"), { connected: "503 Error: send EHLO first", greeted: "ok", mail: "ok", bdat: "ok" });
});

test("every refusal in the table is a named refusal with an enhanced code", () => {
  for (const row of Object.values(VERB_PHASES)) {
    for (const cell of Object.values(row)) if (cell !== "ok") assert.ok(REFUSALS[cell].enhanced.match(/^[45]\.\d+\.\d+$/));
  }
});

test("a refusal is a fresh reply each time (callers may not share one object)", () => {
  const a = phaseRefusal("MAIL", phases.connected);
  const b = phaseRefusal("MAIL", phases.connected);
  assert.notEqual(a, b);
  assert.deepEqual(a, b);
});

test("helloOf and transactionOf read through a chunk to the phase it returns to", () => {
  const chunk: Phase = { kind: "chunk", chunk: { remaining: 3, last: false }, resume: phases.mail };
  assert.equal(helloOf(chunk), hello);
  assert.equal(transactionOf(chunk), tx);
  assert.equal(helloOf({ kind: "connected" }), null);
  assert.equal(transactionOf(phases.greeted), null);
  assert.equal(transactionOf({ kind: "closed" }), null);
  assert.equal(transactionOf({ kind: "auth", hello }), null);
});

test("RSET goes back to greeted, or connected before any HELO", () => {
  assert.deepEqual(greetedOrConnected(hello), { kind: "greeted", hello });
  assert.deepEqual(greetedOrConnected(null), { kind: "connected" });
});
