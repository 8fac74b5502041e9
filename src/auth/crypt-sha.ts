/**
 * crypt(3) SHA-crypt: `$5$` (SHA-256) and `$6$` (SHA-512), from Ulrich Drepper's "Unix crypt using
 * SHA-256 and SHA-512" specification — what Dovecot's SHA256-CRYPT/SHA512-CRYPT schemes and
 * glibc's crypt() produce.
 */
import { createHash, timingSafeEqual } from "node:crypto";

const ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ROUNDS_DEFAULT = 5000;
const ROUNDS_MIN = 1000;
/** The spec allows 999,999,999; a tampered file must not cost minutes per login. */
const ROUNDS_MAX = 10_000_000;

/** Output byte order of the final digest, in groups of three (spec steps 22e). */
const ORDER_512 = [
  [0, 21, 42],
  [22, 43, 1],
  [44, 2, 23],
  [3, 24, 45],
  [25, 46, 4],
  [47, 5, 26],
  [6, 27, 48],
  [28, 49, 7],
  [50, 8, 29],
  [9, 30, 51],
  [31, 52, 10],
  [53, 11, 32],
  [12, 33, 54],
  [34, 55, 13],
  [56, 14, 35],
  [15, 36, 57],
  [37, 58, 16],
  [59, 17, 38],
  [18, 39, 60],
  [40, 61, 19],
  [62, 20, 41],
] as const;
const ORDER_256 = [
  [0, 10, 20],
  [21, 1, 11],
  [12, 22, 2],
  [3, 13, 23],
  [24, 4, 14],
  [15, 25, 5],
  [6, 16, 26],
  [27, 7, 17],
  [18, 28, 8],
  [9, 19, 29],
] as const;

type Algo = "sha256" | "sha512";

function b64From24(b2: number, b1: number, b0: number, n: number): string {
  let w = (b2 << 16) | (b1 << 8) | b0;
  let out = "";
  for (let i = 0; i < n; i++) {
    out += ITOA64[w & 0x3f];
    w >>= 6;
  }
  return out;
}

function repeatTo(block: Buffer, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i += block.length) block.copy(out, i, 0, Math.min(block.length, length - i));
  return out;
}

function digestSha(algo: Algo, password: Buffer, salt: Buffer, rounds: number): Buffer {
  const h = () => createHash(algo);
  const size = algo === "sha512" ? 64 : 32;
  const b = h().update(password).update(salt).update(password).digest();
  const a = h().update(password).update(salt);
  a.update(repeatTo(b, password.length));
  for (let n = password.length; n > 0; n >>= 1) a.update(n & 1 ? b : password);
  let c = a.digest();
  const dp = h();
  for (let i = 0; i < password.length; i++) dp.update(password);
  const p = repeatTo(dp.digest(), password.length);
  const ds = h();
  for (let i = 0; i < 16 + c[0]!; i++) ds.update(salt);
  const s = ds.digest().subarray(0, salt.length);
  for (let i = 0; i < rounds; i++) {
    const r = h();
    r.update(i & 1 ? p : c);
    if (i % 3) r.update(s);
    if (i % 7) r.update(p);
    r.update(i & 1 ? c : p);
    c = r.digest();
  }
  if (c.length !== size) throw new Error("unexpected digest size");
  return c;
}

function encode(algo: Algo, c: Buffer): string {
  let out = "";
  for (const [x, y, z] of algo === "sha512" ? ORDER_512 : ORDER_256) out += b64From24(c[x]!, c[y]!, c[z]!, 4);
  return algo === "sha512" ? out + b64From24(0, 0, c[63]!, 2) : out + b64From24(0, c[31]!, c[30]!, 3);
}

const FORMAT = /^\$([56])\$(?:rounds=(\d{1,10})\$)?([^$]*)(?:\$([./0-9A-Za-z]*))?$/;

/** crypt(password, setting) for `$5$` / `$6$` settings or full hashes; null when not SHA-crypt. */
export function shaCrypt(password: string | Buffer, setting: string): string | null {
  const m = FORMAT.exec(setting);
  if (!m) return null;
  const algo: Algo = m[1] === "6" ? "sha512" : "sha256";
  const custom = m[2] !== undefined;
  const rounds = custom ? Math.min(ROUNDS_MAX, Math.max(ROUNDS_MIN, Number(m[2]))) : ROUNDS_DEFAULT;
  const salt = m[3]!.slice(0, 16); // the spec uses at most 16 salt characters
  const pw = typeof password === "string" ? Buffer.from(password, "utf8") : password;
  const c = digestSha(algo, pw, Buffer.from(salt, "utf8"), rounds);
  return `$${m[1]}$${custom ? `rounds=${rounds}$` : ""}${salt}$${encode(algo, c)}`;
}

/** Constant-time comparison of crypt(password, stored) with stored. */
export function verifyShaCrypt(password: string, stored: string): boolean {
  const computed = shaCrypt(password, stored);
  if (computed === null) return false;
  const a = Buffer.from(computed);
  const b = Buffer.from(stored);
  return a.length === b.length && timingSafeEqual(a, b);
}
