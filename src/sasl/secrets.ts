/**
 * Derivations the user store keeps instead of a plaintext password, one per mechanism that cannot
 * work from a one-way password hash.
 *
 * Password preparation ("SASLprep-lite"): every password is NFKC-normalised before it is hashed or
 * used as a key, on the server and in our clients alike. That is the normalisation step of SASLprep
 * (RFC 4013 §2.2, required for SCRAM by RFC 5802 §2.2) without its mapping and prohibition tables:
 * compatibility forms ("ﬁ", full-width digits, …) compare equal to their plain forms. ASCII
 * passwords are unchanged, so ASCII interoperates with every other implementation; a client that
 * sends non-NFKC non-ASCII bytes to CRAM-MD5/DIGEST-MD5 will not match (use PLAIN or SCRAM).
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { md5StateAfterBlock } from "./md5-state.js";
import type { CramMd5Secret, ScramCredentials } from "./types.js";

export function normalizePassword(password: string): string {
  return password.normalize("NFKC");
}

export const SCRAM_DEFAULT_ITERATIONS = 4096; // RFC 7677 §4: at least 4096
export const SCRAM_SALT_BYTES = 16;

export const hmacSha256 = (key: Buffer, data: Buffer | string): Buffer => createHmac("sha256", key).update(data).digest();
export const sha256 = (data: Buffer): Buffer => createHash("sha256").update(data).digest();

/** RFC 5802 §3: SaltedPassword = Hi(Normalize(password), salt, i) = PBKDF2-HMAC-SHA-256. */
export function scramSaltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  return pbkdf2Sync(Buffer.from(normalizePassword(password), "utf8"), salt, iterations, 32, "sha256");
}

export function deriveScramSha256(password: string, salt: Buffer = randomBytes(SCRAM_SALT_BYTES), iterations = SCRAM_DEFAULT_ITERATIONS): ScramCredentials {
  const salted = scramSaltedPassword(password, salt, iterations);
  const clientKey = hmacSha256(salted, "Client Key");
  return {
    salt: Buffer.from(salt),
    iterations,
    storedKey: sha256(clientKey),
    serverKey: hmacSha256(salted, "Server Key"),
  };
}

/**
 * Dovecot-compatible CRAM-MD5 secret: HMAC-MD5 (RFC 2104) keyed with the password, stopped after
 * the first block of each of the inner and outer hashes.
 */
export function deriveCramMd5Secret(password: string): CramMd5Secret {
  let key = Buffer.from(normalizePassword(password), "utf8");
  if (key.length > 64) key = createHash("md5").update(key).digest(); // RFC 2104 §2
  const block = Buffer.alloc(64);
  key.copy(block);
  const inner = md5StateAfterBlock(Buffer.from(block.map((byte) => byte ^ 0x36)));
  const outer = md5StateAfterBlock(Buffer.from(block.map((byte) => byte ^ 0x5c)));
  return { inner, outer };
}

/**
 * Dovecot's `{CRAM-MD5}` text form: 64 hex digits, the outer state first, then the inner, each as
 * four little-endian 32-bit words (hmac_md5_get_cram_context in Dovecot's hmac-cram-md5.c).
 * Our states already use that byte layout.
 */
export function cramMd5SecretToDovecotHex(secret: CramMd5Secret): string {
  return Buffer.concat([secret.outer, secret.inner]).toString("hex");
}

/** Accepts the 64 hex digits with or without the `{CRAM-MD5}` prefix; throws on anything else. */
export function cramMd5SecretFromDovecotHex(text: string): CramMd5Secret {
  const hex = text.startsWith("{CRAM-MD5}") ? text.slice("{CRAM-MD5}".length) : text;
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error("a {CRAM-MD5} secret is 64 hex digits");
  const bytes = Buffer.from(hex, "hex");
  return { outer: bytes.subarray(0, 16), inner: bytes.subarray(16, 32) };
}

/**
 * RFC 2831 §2.1.2.1: with charset=utf-8, a string whose characters all fit ISO 8859-1 is hashed as
 * ISO 8859-1, otherwise as UTF-8 (Cyrus SASL applies this to user, realm and password alike).
 */
export function digestMd5Bytes(text: string): Buffer {
  return /^[\u0000-\u00ff]*$/.test(text) ? Buffer.from(text, "latin1") : Buffer.from(text, "utf8");
}

/** HA1 = MD5(user ":" realm ":" password), 16 bytes (RFC 2831 §2.1.2.1, the inner H of A1). */
export function deriveDigestMd5Ha1(user: string, realm: string, password: string): Buffer {
  const colon = Buffer.from(":");
  return createHash("md5")
    .update(Buffer.concat([digestMd5Bytes(user), colon, digestMd5Bytes(realm), colon, digestMd5Bytes(normalizePassword(password))]))
    .digest();
}
