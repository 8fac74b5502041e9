/**
 * Authentication-Results: fields in our name are removed whole as the header section is read
 * (RFC 8601 §5; src/smtp/auth-results-field.ts, HeaderCollector.dropField), and ours is written
 * so that no client text can break out of a comment or a value.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { HeaderCollector } from "../../src/smtp/headers.js";
import { authservIdOf, claimsAuthserv, ourAuthResultsField } from "../../src/smtp/auth-results-field.js";
import { commentText, formatAuthResults, propValue } from "../../src/inbound/auth-results.js";

const us = "mail.example.org";

/** What the collector stores for `message`, fed in `size`-octet pieces, and the fields it read. */
function collect(message: string, size: number): { stored: string; fields: string[] } {
  const c = new HeaderCollector({ maxHeaderBytes: 64 * 1024, dropField: ourAuthResultsField(us) });
  let fields: string[] = [];
  c.setHeaderEndHook((info) => {
    fields = info.fields.map((f) => `${f.name}: ${f.value}`);
    return Buffer.from("Received: by us\r\n");
  });
  const out: Buffer[] = [];
  const bytes = Buffer.from(message, "latin1");
  for (let i = 0; i < bytes.length; i += size) out.push(...c.push(bytes.subarray(i, i + size)));
  out.push(...c.finish());
  return { stored: Buffer.concat(out).toString("latin1"), fields };
}

test("our authserv-id: after comments, quoted, any case, a final dot; unreadable values that name us", () => {
  assert.equal(authservIdOf(" (c (nested)) mail.example.org; spf=pass"), "mail.example.org");
  assert.equal(authservIdOf('"mail.example.org" 1; none'), "mail.example.org");
  assert.equal(authservIdOf("(unclosed mail.example.org; spf=pass"), null);
  assert.ok(claimsAuthserv("MAIL.Example.ORG.; dkim=pass", us));
  assert.ok(claimsAuthserv("mail.example.org 1; none", us));
  assert.ok(claimsAuthserv("(unclosed mail.example.org; spf=pass", us), "unreadable, names us: removed");
  assert.ok(!claimsAuthserv("mx.elsewhere.example; spf=pass smtp.mailfrom=a@mail.example.org", us));
  assert.ok(!claimsAuthserv("mail.example.org.evil.example; dkim=pass", us));
});

test("the collector drops a forged field whole (folded lines too), keeps a foreign one, in any chunking", () => {
  const message =
    "Subject: one\r\n" +
    "Authentication-Results: mail.example.org;\r\n\tdkim=pass\r\n header.d=bank.example\r\n" +
    "authentication-results : (x) MAIL.EXAMPLE.ORG.; spf=pass\r\n" +
    "Authentication-Results\x0b: mail.example.org; dmarc=pass\r\n" +
    "Authentication-Results: mx.elsewhere.example; spf=pass\r\n" +
    "From: <a@example.net>\r\n\r\nbody\r\nAuthentication-Results: mail.example.org; in the body, kept\r\n";
  const expected =
    "Received: by us\r\n" +
    "Subject: one\r\n" +
    "Authentication-Results: mx.elsewhere.example; spf=pass\r\n" +
    "From: <a@example.net>\r\n\r\nbody\r\nAuthentication-Results: mail.example.org; in the body, kept\r\n";
  for (const size of [1, 3, 7, 64, 4096]) {
    const { stored, fields } = collect(message, size);
    assert.equal(stored, expected, `pieces of ${size}`);
    assert.deepEqual(fields, ["Subject: one", "Authentication-Results: mx.elsewhere.example; spf=pass", "From: <a@example.net>"]);
  }
});

test("a message that is all header, its forged field last without a line end, loses it", () => {
  const { stored } = collect("Subject: x\r\nAuthentication-Results: mail.example.org; dkim=pass", 5);
  assert.equal(stored, "Received: by us\r\nSubject: x\r\n");
});

test("our field: one method per folded line; comments and values cannot be broken out of", () => {
  const field = formatAuthResults(us, [
    { method: "spf", result: "pass", comment: "from a)b (c\r\nd", props: [["smtp.mailfrom", '"x;y"@example.net']] },
    { method: "dmarc", result: "fail", props: [["header.from", "example.net"]] },
  ]);
  assert.equal(
    field,
    'Authentication-Results: mail.example.org;\r\n\tspf=pass (from a\\)b \\(c d) smtp.mailfrom="\\"x;y\\"@example.net";\r\n\tdmarc=fail header.from=example.net',
  );
  assert.equal(formatAuthResults(us, []), "Authentication-Results: mail.example.org; none");
  assert.equal(commentText("a\\b"), "a\\\\b");
  assert.equal(propValue("a@b.example"), "a@b.example");
  assert.equal(propValue(""), '""');
});
