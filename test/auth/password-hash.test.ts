import { test } from "node:test";
import assert from "node:assert/strict";
import { DUMMY_PASSWORD_HASH, hashPassword, needsRehash, parsePasswordHash, verifyAgainstDummyHash, verifyPasswordHash } from "../../src/auth/password-hash.js";

test("hash format is $scrypt$ln=15,r=8,p=1$salt$hash with a 16-byte salt and a 32-byte key", async () => {
  const stored = await hashPassword("hunter2");
  assert.match(stored, /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
  const parsed = parsePasswordHash(stored)!;
  assert.equal(parsed.salt.length, 16);
  assert.equal(parsed.hash.length, 32);
  assert.notEqual(await hashPassword("hunter2"), stored, "random salt");
});

test("verify accepts the password and nothing else", async () => {
  const stored = await hashPassword("hunter2");
  assert.equal(await verifyPasswordHash("hunter2", stored), true);
  assert.equal(await verifyPasswordHash("hunter3", stored), false);
  assert.equal(await verifyPasswordHash("", stored), false);
});

test("parameters are read from the stored string, so they can change later", async () => {
  const cheap = await hashPassword("pw", { ln: 10, r: 4, p: 2 });
  assert.match(cheap, /^\$scrypt\$ln=10,r=4,p=2\$/);
  assert.equal(await verifyPasswordHash("pw", cheap), true);
  assert.equal(needsRehash(cheap), true);
  assert.equal(needsRehash(await hashPassword("pw")), false);
});

test("malformed or out-of-range stored values verify false (and never allocate absurd memory)", async () => {
  const good = await hashPassword("pw");
  for (const stored of [
    "",
    "plaintext",
    good.replace("ln=15", "ln=30"),
    good.replace("$scrypt$", "$bcrypt$"),
    good.slice(0, -10) + "!!!!!!!!!!",
    good.slice(0, -43) + "A".repeat(400),
  ]) {
    assert.equal(await verifyPasswordHash("pw", stored), false, stored);
  }
});

test("the dummy hash is well-formed with the default parameters and matches no likely password", async () => {
  assert.deepEqual(parsePasswordHash(DUMMY_PASSWORD_HASH)?.params, { ln: 15, r: 8, p: 1 });
  assert.equal(needsRehash(DUMMY_PASSWORD_HASH), false, "dummy must cost what a real hash costs");
  assert.equal(await verifyAgainstDummyHash(""), false);
  assert.equal(await verifyAgainstDummyHash("password"), false);
});

test("passwords are NFKC-normalised before hashing", async () => {
  assert.equal(await verifyPasswordHash("\ufb01sh", await hashPassword("fish")), true);
});
