/** The authzid rule (src/policy/authzid.ts): a login acts as itself, admins as anyone. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { authzidRule } from "../../src/policy/authzid.js";

test("a login may name itself as authzid, in any case", () => {
  const allowed = authzidRule([]);
  assert.equal(allowed("alice@example.org", "alice@example.org"), true);
  assert.equal(allowed("alice@example.org", "Alice@Example.ORG"), true);
});

test("without admins nobody may act as another user", () => {
  const allowed = authzidRule([]);
  assert.equal(allowed("alice@example.org", "bob@example.org"), false);
  assert.equal(allowed("alice@example.org", ""), false);
});

test("an admin (listed in any case) may act as anyone; the others still may not", () => {
  const allowed = authzidRule(["Helpdesk@Example.org"]);
  assert.equal(allowed("helpdesk@example.org", "bob@example.org"), true);
  assert.equal(allowed("HELPDESK@example.org", "carol@example.net"), true);
  assert.equal(allowed("alice@example.org", "bob@example.org"), false);
  assert.equal(allowed("bob@example.org", "helpdesk@example.org"), false, "naming an admin does not make one");
});
