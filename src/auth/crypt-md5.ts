/**
 * crypt(3) MD5-crypt, `$1$salt$hash` (Poul-Henning Kamp's FreeBSD algorithm): Dovecot's MD5-CRYPT
 * (alias MD5) scheme, still common in older passwd-files. Weak — 1000 MD5 rounds — so it is only
 * verified, never written; `doveadm pw -s SHA512-CRYPT` is the way forward.
 */
import { createHash, timingSafeEqual } from "node:crypto";

const ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const MAGIC = "$1$";

function to64(value: number, n: number): string {
  let out = "";
  for (let i = 0; i < n; i++, value >>= 6) out += ITOA64[value & 0x3f];
  return out;
}

/** The full `$1$salt$hash` string for `password` and the salt of `setting` (at most 8 characters). */
export function md5Crypt(password: string, setting: string): string {
  if (!setting.startsWith(MAGIC)) throw new Error("not an MD5-crypt string");
  const rest = setting.slice(MAGIC.length);
  const salt = rest.slice(0, Math.min(8, rest.includes("$") ? rest.indexOf("$") : rest.length));
  const pw = Buffer.from(password, "utf8");
  const saltBytes = Buffer.from(salt, "utf8");

  const alt = createHash("md5").update(pw).update(saltBytes).update(pw).digest();
  const ctx = createHash("md5").update(pw).update(MAGIC).update(saltBytes);
  for (let left = pw.length; left > 0; left -= 16) ctx.update(alt.subarray(0, Math.min(16, left)));
  // For each bit of the length, low first: a NUL byte when set, else the first byte of the password.
  for (let i = pw.length; i > 0; i >>= 1) ctx.update(i & 1 ? Buffer.alloc(1) : pw.subarray(0, 1));
  let final = ctx.digest();

  for (let i = 0; i < 1000; i++) {
    const round = createHash("md5");
    round.update(i & 1 ? pw : final);
    if (i % 3) round.update(saltBytes);
    if (i % 7) round.update(pw);
    round.update(i & 1 ? final : pw);
    final = round.digest();
  }

  const f = final;
  const hash =
    to64((f[0]! << 16) | (f[6]! << 8) | f[12]!, 4) +
    to64((f[1]! << 16) | (f[7]! << 8) | f[13]!, 4) +
    to64((f[2]! << 16) | (f[8]! << 8) | f[14]!, 4) +
    to64((f[3]! << 16) | (f[9]! << 8) | f[15]!, 4) +
    to64((f[4]! << 16) | (f[10]! << 8) | f[5]!, 4) +
    to64(f[11]!, 2);
  return `${MAGIC}${salt}$${hash}`;
}

/** Constant-time comparison of the recomputed string with the stored one. */
export function verifyMd5Crypt(password: string, stored: string): boolean {
  if (!/^\$1\$[^$]{0,8}\$[./0-9A-Za-z]{22}$/.test(stored)) throw new Error("malformed MD5-CRYPT value");
  const computed = Buffer.from(md5Crypt(password, stored));
  const expected = Buffer.from(stored);
  return computed.length === expected.length && timingSafeEqual(computed, expected);
}
