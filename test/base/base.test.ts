/** The shared vocabulary in src/base (issue 13 item 2): one spelling of each rule, tested here. */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Logger } from "pino";
import { isListenerMode, LISTENER_MODES } from "../../src/base/listener-mode.js";
import { domainOf, normaliseDomain } from "../../src/base/domain.js";
import { DEFAULT_RECIPIENT_DELIMITER, isSubaddressOf } from "../../src/base/mailbox.js";
import type { Log } from "../../src/base/log.js";
import { ALLOW, deny } from "../../src/base/decision.js";
import { reply } from "../../src/base/reply.js";
import {
  argumentError,
  closingReply,
  contentRefusal,
  localError,
  policyDeferral,
  policyRefusal,
  Se442BadConnection,
  syntaxError,
} from "../../src/base/reply-codes.js";
import { configSchema } from "../../src/config/schema.js";

test("listener modes: one list, in the demo's port order, and a guard for text from the CLI or a dialog file", () => {
  assert.deepEqual([...LISTENER_MODES], ["mta", "submission", "submissions"]);
  for (const m of LISTENER_MODES) assert.equal(isListenerMode(m), true);
  for (const m of ["local", "MTA", "", "smtp"]) assert.equal(isListenerMode(m), false, m);
});

test("normaliseDomain: no case, one trailing dot of the root removed; domainOf takes the part after the last @", () => {
  assert.equal(normaliseDomain("Example.ORG."), "example.org");
  assert.equal(normaliseDomain("example.org"), "example.org");
  assert.equal(normaliseDomain("example.org.."), "example.org.", "only one dot is the root's");
  assert.equal(domainOf('"a@b"@Example.ORG.'), "example.org");
  assert.equal(domainOf("nodomain"), "");
});

test("sub-addressing: base<delimiter>detail is base's; '' turns it off; the config default is the constant", () => {
  assert.equal(isSubaddressOf("john", "john", "+"), true);
  assert.equal(isSubaddressOf("john+lists", "john", "+"), true);
  assert.equal(isSubaddressOf("john-lists", "john", "-"), true);
  assert.equal(isSubaddressOf("john-lists", "john", "+"), false);
  assert.equal(isSubaddressOf("johnny", "john", "+"), false);
  assert.equal(isSubaddressOf("john+lists", "john", ""), false);
  assert.equal(isSubaddressOf("john", "john", ""), true);
  assert.equal(configSchema.shape.aliases.parse(undefined).recipientDelimiter, DEFAULT_RECIPIENT_DELIMITER);
});

test("named replies carry the code pair their name says", () => {
  const pair = (r: { code: number; enhanced?: string }) => `${r.code} ${r.enhanced}`;
  assert.equal(pair(closingReply(Se442BadConnection, "x")), "421 4.4.2");
  assert.equal(pair(policyRefusal(553, "x")), "553 5.7.1");
  assert.equal(pair(policyRefusal(554, "x")), "554 5.7.1");
  assert.equal(pair(policyDeferral("x")), "450 4.7.1");
  assert.equal(pair(localError("x")), "451 4.3.0");
  assert.equal(pair(syntaxError("x")), "500 5.5.2");
  assert.equal(pair(argumentError("x")), "501 5.5.4");
  assert.equal(pair(contentRefusal("x")), "550 5.6.0");
  assert.deepEqual(reply(250, "2.0.0"), { code: 250, enhanced: "2.0.0", lines: [""] });
});

test("a decision denies with a reply and a reason", () => {
  assert.deepEqual(ALLOW, { allow: true });
  const d = deny(policyRefusal(550, "no"), "why");
  assert.equal(d.allow, false);
  if (!d.allow) assert.equal(d.reason, "why");
});

test("Log is a subset of pino's Logger: the server's logger fits every layer below it", () => {
  const fits = (logger: Logger): Log => logger;
  assert.equal(typeof fits, "function");
});
