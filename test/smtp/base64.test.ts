import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeBase64Strict, encodeBase64 } from "../../src/smtp/base64.js";

const valid: [string, string][] = [
  ["", ""],
  ["QQ==", "A"],
  ["QUI=", "AB"],
  ["QUJD", "ABC"],
  ["AHVzZXIAcGFzcw==", "\0user\0pass"],
];
for (const [text, plain] of valid) {
  test(`strict base64 accepts ${JSON.stringify(text)}`, () => {
    assert.deepEqual(decodeBase64Strict(text), Buffer.from(plain, "latin1"));
  });
}

// SECURITY rule 10: anything Node would silently "fix" is refused.
const invalid: [string, string][] = [
  ["QQ", "length not a multiple of 4"],
  ["QQ=", "short padding"],
  ["Q===", "three pad characters"],
  ["QQ==QQ==", "padding in the middle"],
  ["QU I=", "space inside"],
  ["QUI=\r\n", "line end inside"],
  ["QUJ*", "character outside the alphabet"],
  ["QUJ-", "base64url alphabet"],
  ["=", "the RFC 4954 empty response is not base64"],
  ["QR==", "non-zero bits after the last byte"],
  ["QUJD\0", "NUL"],
];
for (const [text, why] of invalid) {
  test(`strict base64 refuses ${JSON.stringify(text)} (${why})`, () => {
    assert.equal(decodeBase64Strict(text), null);
  });
}

test("encodeBase64 round-trips through the strict decoder", () => {
  for (let n = 0; n < 40; n++) {
    const buf = Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff));
    assert.deepEqual(decodeBase64Strict(encodeBase64(buf)), buf);
  }
});
