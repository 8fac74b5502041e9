/**
 * Memory-hard password hashing with scrypt (RFC 7914), stored as
 * `$scrypt$ln=15,r=8,p=1$<salt b64>$<hash b64>` (PHC-style; base64 without padding).
 * Parameters are read back from each string, so the defaults can grow without breaking old hashes;
 * `needsRehash` tells when to upgrade one at the next successful login or password change.
 * Passwords are NFKC-normalised first (see sasl/secrets.ts).
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from "node:crypto";
import { normalizePassword } from "../sasl/secrets.js";

export interface ScryptParams {
  /** log2 of the cost N. */
  ln: number;
  r: number;
  p: number;
}

export const DEFAULT_SCRYPT_PARAMS: Readonly<ScryptParams> = { ln: 15, r: 8, p: 1 };
const KEY_BYTES = 32;
const SALT_BYTES = 16;
/** Refuse absurd parameters from a tampered database instead of allocating gigabytes. */
const LIMITS = { ln: [10, 22], r: [1, 32], p: [1, 16] } as const;

export interface ParsedPasswordHash {
  params: ScryptParams;
  salt: Buffer;
  hash: Buffer;
}

/** Salt and key: 12 to 64 bytes each in unpadded base64 (bounds keep a tampered row cheap). */
const FORMAT = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{16,86})\$([A-Za-z0-9+/]{16,86})$/;

export function parsePasswordHash(stored: string): ParsedPasswordHash | null {
  const match = FORMAT.exec(stored);
  if (!match) return null;
  const params = { ln: Number(match[1]), r: Number(match[2]), p: Number(match[3]) };
  for (const key of ["ln", "r", "p"] as const) {
    if (params[key] < LIMITS[key][0] || params[key] > LIMITS[key][1]) return null;
  }
  return { params, salt: Buffer.from(match[4]!, "base64"), hash: Buffer.from(match[5]!, "base64") };
}

export function formatPasswordHash({ params, salt, hash }: ParsedPasswordHash): string {
  const b64 = (bytes: Buffer) => bytes.toString("base64").replace(/=+$/, "");
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${b64(salt)}$${b64(hash)}`;
}

function scryptAsync(password: string, salt: Buffer, keylen: number, { ln, r, p }: ScryptParams): Promise<Buffer> {
  const N = 2 ** ln;
  // scrypt needs 128·N·r bytes; Node's default maxmem (32 MiB) is exactly too small for ln=15,r=8.
  const options: ScryptOptions = { N, r, p, maxmem: 128 * N * r + 16 * 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(Buffer.from(normalizePassword(password), "utf8"), salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT_PARAMS): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await scryptAsync(password, salt, KEY_BYTES, params);
  return formatPasswordHash({ params: { ...params }, salt, hash });
}

/**
 * A well-formed hash of a random password nobody knows, with the default parameters:
 * unknown users are verified against it so they cost the same as known ones (SECURITY rule 14).
 */
export const DUMMY_PASSWORD_HASH = "$scrypt$ln=15,r=8,p=1$+vm5zxFVVOLG+0mqMGuZJg$Z+5gKJTlIPgLKD5TCcm+sPzNC0Rt/J8MNuWqr/Ser9E";

/** False for a wrong password or an unparsable stored value (which still costs a dummy scrypt). */
export async function verifyPasswordHash(password: string, stored: string): Promise<boolean> {
  const parsed = parsePasswordHash(stored);
  const target = parsed ?? parsePasswordHash(DUMMY_PASSWORD_HASH)!;
  const computed = await scryptAsync(password, target.salt, target.hash.length, target.params);
  return parsed !== null && computed.length === target.hash.length && timingSafeEqual(computed, target.hash);
}

export function verifyAgainstDummyHash(password: string): Promise<boolean> {
  return verifyPasswordHash(password, DUMMY_PASSWORD_HASH);
}

/** True when `stored` uses other parameters than `params` (or does not parse). */
export function needsRehash(stored: string, params: ScryptParams = DEFAULT_SCRYPT_PARAMS): boolean {
  const parsed = parsePasswordHash(stored);
  return !parsed || parsed.params.ln !== params.ln || parsed.params.r !== params.r || parsed.params.p !== params.p;
}
