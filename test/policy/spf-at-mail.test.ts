/** inbound.spfRejectFail's rule (src/policy/spf-at-mail.ts), with a stub SPF check. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkSpfAtMail } from "../../src/policy/spf-at-mail.js";
import type { PolicyContext } from "../../src/smtp/session-types.js";
import type { MailPath } from "../../src/smtp/address.js";

const sender = { address: "a@forger.example.net" } as MailPath;
const ctx: PolicyContext = { ip: "192.0.2.7", mode: "mta", helo: "client.example.net" };

test("SPF fail is refused with 550 5.7.23; other results, errors, trusted clients and submission pass", async () => {
  const asked: unknown[] = [];
  const setup = (result: string | Error, trusted = false) => ({
    check: async (q: unknown) => {
      asked.push(q);
      if (result instanceof Error) throw result;
      return { result, domain: "forger.example.net" };
    },
    trusted: () => trusted,
  });
  const fail = await checkSpfAtMail(setup("fail"), ctx, sender);
  assert.ok(!fail.allow);
  assert.equal(fail.reply.code, 550);
  assert.equal(fail.reply.enhanced, "5.7.23");
  assert.match(fail.reply.lines[0]!, /SPF validation failed: forger\.example\.net does not designate 192\.0\.2\.7/);
  assert.deepEqual(asked[0], { ip: "192.0.2.7", helo: "client.example.net", sender: "a@forger.example.net" });
  for (const result of ["softfail", "neutral", "none", "temperror", "permerror", "pass"])
    assert.ok((await checkSpfAtMail(setup(result), ctx, sender)).allow, result);
  assert.ok((await checkSpfAtMail(setup(new Error("boom")), ctx, sender)).allow);
  assert.ok((await checkSpfAtMail(setup("fail", true), ctx, sender)).allow, "mynetworks or authenticated");
  assert.ok((await checkSpfAtMail(setup("fail"), { ...ctx, mode: "submission" }, sender)).allow);
});
