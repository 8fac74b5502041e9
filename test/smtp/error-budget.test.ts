/**
 * The per-connection error budget (src/smtp/error-budget.ts): error replies, junk commands and
 * AUTH failures counted in one place, with the exceptions that are not the client's error.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ErrorBudget, isClientError } from "../../src/smtp/error-budget.js";
import { refusal } from "../../src/smtp/refusals.js";
import { reply } from "../../src/smtp/reply.js";

const LIMITS = { errors: 3, junkCommands: 2, authFailures: 3 };

test("4xx and 5xx replies are client errors; 2xx and 3xx are not", () => {
  assert.equal(isClientError(reply(250, "2.0.0", "Ok")), false);
  assert.equal(isClientError(reply(354, undefined, "go ahead")), false);
  assert.equal(isClientError(reply(450, "4.7.1", "later")), true);
  assert.equal(isClientError(reply(503, "5.5.1", "sequence")), true);
  assert.equal(isClientError(refusal("needMail")), true);
});

test("the closing 421 and the too-many-recipients 452 4.5.3 are not client errors (RFC 5321 §3.8, §4.5.3.1.10)", () => {
  assert.equal(isClientError(reply(421, "4.7.0", "closing")), false);
  assert.equal(isClientError(refusal("tooManyRecipients")), false);
  assert.equal(isClientError(reply(452, "4.3.1", "Error: insufficient system storage")), true, "only 4.5.3 is flow control");
});

test("chargeReplies counts every client error in one output and says when the limit is reached", () => {
  const b = new ErrorBudget(LIMITS);
  assert.equal(b.chargeReplies([reply(250, "2.0.0", "Ok")]), false);
  assert.equal(b.chargeReplies([reply(500, "5.5.2", "x"), reply(501, "5.5.4", "y")]), false);
  assert.deepEqual(b.counts, { errors: 2, junk: 0 });
  assert.equal(b.chargeReplies([refusal("tooManyRecipients")]), false);
  assert.equal(b.chargeReplies([reply(554, "5.7.1", "denied")]), true);
  assert.deepEqual(b.counts, { errors: 3, junk: 0 });
});

test("junk commands: the one past junkCommands spends the budget", () => {
  const b = new ErrorBudget(LIMITS);
  assert.equal(b.chargeJunk(), false);
  assert.equal(b.chargeJunk(), false);
  assert.equal(b.chargeJunk(), true);
  assert.deepEqual(b.counts, { errors: 0, junk: 3 });
});

test("AUTH failures: spent at authFailures (RFC 4954 §4)", () => {
  const b = new ErrorBudget(LIMITS);
  assert.equal(b.chargeAuthFailure(), false);
  assert.equal(b.chargeAuthFailure(), false);
  assert.equal(b.authFailuresSpent, false);
  assert.equal(b.chargeAuthFailure(), true);
  assert.equal(b.authFailuresSpent, true);
  assert.equal(b.authFailures, 3);
});

test("a queued message forgives errors and junk commands, not AUTH failures", () => {
  const b = new ErrorBudget(LIMITS);
  b.chargeReplies([reply(500, "5.5.2", "x"), reply(500, "5.5.2", "x")]);
  b.chargeJunk();
  b.chargeAuthFailure();
  b.forgive();
  assert.deepEqual(b.counts, { errors: 0, junk: 0 });
  assert.equal(b.authFailures, 1);
  assert.equal(b.chargeReplies([reply(500, "5.5.2", "x")]), false);
});

test("counts is a snapshot, not a live view (the tarpit compares two of them)", () => {
  const b = new ErrorBudget(LIMITS);
  const before = b.counts;
  b.chargeJunk();
  assert.deepEqual(before, { errors: 0, junk: 0 });
});
