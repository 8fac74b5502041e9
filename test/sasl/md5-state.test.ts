import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { hmacMd5FromSecret, MD5_INITIAL_STATE, md5Resume, md5StateAfterBlock } from "../../src/sasl/md5-state.js";
import { cramMd5SecretFromDovecotHex, cramMd5SecretToDovecotHex, deriveCramMd5Secret, deriveDigestMd5Ha1, deriveScramSha256 } from "../../src/sasl/secrets.js";

test("md5Resume from the initial state equals crypto's MD5 for every padding case", () => {
  for (let length = 0; length <= 200; length++) {
    const data = randomBytes(length);
    assert.deepEqual(md5Resume(MD5_INITIAL_STATE, 0, data), createHash("md5").update(data).digest(), `length ${length}`);
  }
});

test("md5Resume continues a state taken after whole blocks", () => {
  const data = randomBytes(64 + 100);
  const state = md5StateAfterBlock(data.subarray(0, 64));
  assert.deepEqual(md5Resume(state, 64, data.subarray(64)), createHash("md5").update(data).digest());
  assert.throws(() => md5Resume(state, 10, data), RangeError);
});

test("HMAC-MD5 finished from a CRAM-MD5 secret equals crypto's HMAC (short and >64-byte keys)", () => {
  for (const password of ["x", "tanstaaftanstaaf", "k".repeat(64), "long".repeat(30)]) {
    const message = randomBytes(50);
    assert.deepEqual(hmacMd5FromSecret(deriveCramMd5Secret(password), message), createHmac("md5", password).update(message).digest());
  }
});

test("RFC 2195 §2 digest from the stored secret", () => {
  const secret = deriveCramMd5Secret("tanstaaftanstaaf");
  const digest = hmacMd5FromSecret(secret, Buffer.from("<1896.697170952@postoffice.reston.mci.net>"));
  assert.equal(digest.toString("hex"), "b913a602c7eda7a495b4e6e7334d3890");
});

test("Dovecot {CRAM-MD5} format: `doveadm pw -s CRAM-MD5 -p password` output, outer state first", () => {
  const hex = "9186d855e11eba527a7a52ca82b313e180d62234f0acc9051b527243d41e2740";
  const secret = deriveCramMd5Secret("password");
  assert.equal(cramMd5SecretToDovecotHex(secret), hex);
  const parsed = cramMd5SecretFromDovecotHex(`{CRAM-MD5}${hex}`);
  assert.deepEqual(parsed.inner, secret.inner);
  assert.deepEqual(parsed.outer, secret.outer);
  assert.throws(() => cramMd5SecretFromDovecotHex(hex.slice(2)));
  assert.throws(() => cramMd5SecretFromDovecotHex(`${hex.slice(1)}g`));
});

test("passwords are NFKC-normalised before every derivation", () => {
  const salt = Buffer.alloc(16, 7);
  assert.deepEqual(deriveScramSha256("\ufb01sh", salt), deriveScramSha256("fish", salt)); // "ﬁ" ligature
  assert.deepEqual(deriveCramMd5Secret("\uff11\uff12\uff13"), deriveCramMd5Secret("123")); // full-width digits
  assert.deepEqual(deriveDigestMd5Ha1("u", "r", "\ufb01"), deriveDigestMd5Ha1("u", "r", "fi"));
});

test("SCRAM keys follow RFC 5802 §3", () => {
  const salt = Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64");
  const credentials = deriveScramSha256("pencil", salt, 4096);
  const salted = pbkdf2Sync("pencil", salt, 4096, 32, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  assert.deepEqual(credentials, {
    salt,
    iterations: 4096,
    storedKey: createHash("sha256").update(clientKey).digest(),
    serverKey: createHmac("sha256", salted).update("Server Key").digest(),
  });
  assert.equal(deriveScramSha256("pencil").salt.length, 16, "random 16-byte salt by default");
});

test("DIGEST-MD5 HA1 hashes ISO 8859-1 text as Latin-1, other text as UTF-8 (RFC 2831 §2.1.2.1)", () => {
  const md5 = (bytes: Buffer) => createHash("md5").update(bytes).digest();
  assert.deepEqual(deriveDigestMd5Ha1("jürgen", "r", "pässword"), md5(Buffer.from("jürgen:r:pässword", "latin1")));
  assert.deepEqual(deriveDigestMd5Ha1("u", "r", "€uro"), md5(Buffer.concat([Buffer.from("u:r:"), Buffer.from("€uro", "utf8")])));
  assert.deepEqual(deriveDigestMd5Ha1("chris", "elwood.innosoft.com", "secret"), md5(Buffer.from("chris:elwood.innosoft.com:secret")));
});
