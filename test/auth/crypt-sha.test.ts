/** SHA-crypt ($5$/$6$) against glibc's crypt as `openssl passwd` and `doveadm pw` produce it. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { shaCrypt, verifyShaCrypt } from "../../src/auth/crypt-sha.js";
import { doveadmPw } from "./helpers/daemons.js";

const openssl = (flag: string, salt: string, pw: string) => execFileSync("openssl", ["passwd", flag, "-salt", salt, pw], { encoding: "utf8" }).trim();

test("matches openssl passwd -5/-6 for passwords of many lengths (the bit loop over the length)", () => {
  for (const pw of ["a", "Hello world!", "x".repeat(31), "y".repeat(64), "Grüße 🔑", "z".repeat(130)]) {
    for (const [flag, prefix] of [
      ["-5", "$5$"],
      ["-6", "$6$"],
    ] as const) {
      const expected = openssl(flag, "saltstring", pw);
      assert.equal(shaCrypt(pw, `${prefix}saltstring`), expected, `${flag} ${JSON.stringify(pw)}`);
    }
  }
});

test("rounds= settings and 16-character salt truncation (Drepper's spec)", () => {
  const expected = openssl("-5", "saltstringsaltstring", "Hello world!"); // openssl truncates the salt to 16
  assert.equal(shaCrypt("Hello world!", "$5$saltstringsaltstring"), expected);
  const withRounds = shaCrypt("secret", "$6$rounds=1000$abc");
  assert.match(withRounds!, /^\$6\$rounds=1000\$abc\$[./0-9A-Za-z]{86}$/);
  assert.ok(verifyShaCrypt("secret", withRounds!));
  assert.equal(shaCrypt("x", "$1$md5crypt"), null);
  // The empty password (openssl refuses to hash it) still gets a well-formed hash.
  assert.match(shaCrypt("", "$6$s")!, /^\$6\$s\$[./0-9A-Za-z]{86}$/);
});

test("verifies doveadm pw SHA512-CRYPT and SHA256-CRYPT hashes, and only the right password", () => {
  for (const scheme of ["SHA512-CRYPT", "SHA256-CRYPT"]) {
    const hash = doveadmPw(scheme, "pa ss w0rd").replace(/^\{[^}]+\}/, "");
    assert.ok(verifyShaCrypt("pa ss w0rd", hash), scheme);
    assert.equal(verifyShaCrypt("pa ss w0rD", hash), false, scheme);
  }
});
