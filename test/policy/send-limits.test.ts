/** Per-user sending limits: messages and recipients per hour, 450 4.7.1, sliding hour, 0 = off. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { SendLimits } from "../../src/policy/send-limits.js";

test("messages per hour: the next MAIL is refused with 450 4.7.1 until the hour has passed", () => {
  let t = 0;
  const limits = new SendLimits({ messagesPerHour: 2, recipientsPerHour: 0 }, () => t);
  assert.equal(limits.checkMessage("john@example.org").allow, true);
  limits.sent("john@example.org", 1);
  t += 1000;
  limits.sent("John@example.org", 1);
  const refused = limits.checkMessage("john@example.org");
  assert.equal(refused.allow, false);
  assert.equal(!refused.allow && `${refused.reply.code} ${refused.reply.enhanced}`, "450 4.7.1");
  assert.equal(limits.checkMessage("mary@example.org").allow, true, "per user");
  t += 3600_000 - 999;
  assert.equal(limits.checkMessage("john@example.org").allow, true, "the first message left the window");
});

test("recipients per hour count the recipients already accepted in this transaction", () => {
  const limits = new SendLimits({ messagesPerHour: 0, recipientsPerHour: 5 }, () => 0);
  limits.sent("john@example.org", 3);
  assert.equal(limits.checkRecipient("john@example.org", 1).allow, true); // 3 + 1 → the 5th
  const refused = limits.checkRecipient("john@example.org", 2); // 3 + 2 → would be the 6th
  assert.equal(!refused.allow && refused.reply.code, 450);
  assert.match(!refused.allow ? refused.reason : "", /5 recipients per hour/);
});

test("0 turns a limit off", () => {
  const limits = new SendLimits({ messagesPerHour: 0, recipientsPerHour: 0 }, () => 0);
  for (let i = 0; i < 1000; i++) limits.sent("john@example.org", 100);
  assert.equal(limits.checkMessage("john@example.org").allow, true);
  assert.equal(limits.checkRecipient("john@example.org", 99).allow, true);
});
