/**
 * Dovecot password schemes (`{SCHEME}data`, as `doveadm pw` writes them): verification of a
 * plaintext password, and the derived secrets the challenge-response mechanisms need.
 * Library: hash-wasm (pure WebAssembly, no native build) for bcrypt and Argon2; SHA-crypt is ours.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { argon2Verify, bcryptVerify } from "hash-wasm";
import { verifyShaCrypt } from "./crypt-sha.js";
import { verifyMd5Crypt } from "./crypt-md5.js";
import { verifyOnPool } from "./hash-pool.js";
import { cramMd5SecretFromDovecotHex, deriveCramMd5Secret, deriveScramSha256, normalizePassword } from "../sasl/secrets.js";
import type { CramMd5Secret, ScramCredentials } from "../sasl/types.js";

export const SUPPORTED_SCHEMES = [
  "SHA512-CRYPT",
  "SHA256-CRYPT",
  "BLF-CRYPT",
  "ARGON2ID",
  "ARGON2I",
  "SSHA512",
  "SSHA256",
  "PLAIN",
  "CRAM-MD5",
  "SCRAM-SHA-256",
  "MD5-CRYPT",
] as const;
export type Scheme = (typeof SUPPORTED_SCHEMES)[number];

const ALIASES: Record<string, Scheme> = { CLEAR: "PLAIN", CLEARTEXT: "PLAIN", "HMAC-MD5": "CRAM-MD5", BLOWFISH: "BLF-CRYPT", MD5: "MD5-CRYPT" };

export interface StoredPassword {
  scheme: Scheme;
  data: string;
}

/** `{SCHEME}data`; a bare crypt string (`$6$…`, `$2y$…`) is taken by its prefix. Null when unsupported. */
export function parseStoredPassword(text: string): StoredPassword | null {
  const m = /^\{([A-Za-z0-9._-]+)\}(.*)$/s.exec(text);
  if (!m) {
    if (text.startsWith("$6$")) return { scheme: "SHA512-CRYPT", data: text };
    if (text.startsWith("$5$")) return { scheme: "SHA256-CRYPT", data: text };
    if (/^\$2[abxy]\$/.test(text)) return { scheme: "BLF-CRYPT", data: text };
    if (text.startsWith("$1$")) return { scheme: "MD5-CRYPT", data: text };
    return null;
  }
  const name = m[1]!.toUpperCase();
  const scheme = (SUPPORTED_SCHEMES as readonly string[]).includes(name) ? (name as Scheme) : ALIASES[name];
  return scheme ? { scheme, data: m[2]! } : null;
}

function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Salted SHA-2: base64(H(password ‖ salt) ‖ salt). */
function verifySalted(algo: "sha256" | "sha512", password: string, data: string): boolean {
  const raw = Buffer.from(data, "base64");
  const size = algo === "sha512" ? 64 : 32;
  if (raw.length <= size) return false;
  const salt = raw.subarray(size);
  const computed = createHash(algo).update(Buffer.from(password, "utf8")).update(salt).digest();
  return safeEqual(computed, raw.subarray(0, size));
}

/** Why parseStoredPassword refused a password field, for the admin's log. */
export function unsupportedReason(text: string): string {
  if (text === "") return "empty password field";
  const m = /^\{([^}]*)\}/.exec(text);
  if (m) return `unsupported password scheme {${m[1]}} (supported: ${SUPPORTED_SCHEMES.join(", ")})`;
  if (/^\$[0-9a-z]+\$/.test(text)) return `unsupported crypt prefix ${/^\$[0-9a-z]+\$/.exec(text)![0]} (no {SCHEME} given)`;
  return "password field has no {SCHEME} prefix (Dovecot's default_pass_scheme is not assumed)";
}

/** Schemes that cost milliseconds to seconds of CPU: verified on the hash pool, off the event loop. */
const SLOW_SCHEMES: ReadonlySet<Scheme> = new Set(["SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "BLF-CRYPT", "ARGON2ID", "ARGON2I", "SCRAM-SHA-256"]);

/** Rejects on a malformed stored value (the caller reports backend-error). */
export function verifyStoredPassword(password: string, stored: StoredPassword): Promise<boolean> {
  return SLOW_SCHEMES.has(stored.scheme) ? verifyOnPool(password, stored) : verifyStoredPasswordHere(password, stored);
}

/** verifyStoredPassword on this thread (the hash pool's workers call it). */
export async function verifyStoredPasswordHere(password: string, stored: StoredPassword): Promise<boolean> {
  switch (stored.scheme) {
    case "SHA512-CRYPT":
    case "SHA256-CRYPT":
      return verifyShaCrypt(password, stored.data);
    case "MD5-CRYPT":
      return verifyMd5Crypt(password, stored.data);
    case "BLF-CRYPT":
      // $2y$ (PHP, Dovecot) and $2b$ are the same algorithm.
      return bcryptVerify({ password, hash: stored.data.replace(/^\$2[axy]\$/, "$2b$") });
    case "ARGON2ID":
    case "ARGON2I":
      return argon2Verify({ password, hash: stored.data });
    case "SSHA512":
      return verifySalted("sha512", password, stored.data);
    case "SSHA256":
      return verifySalted("sha256", password, stored.data);
    case "PLAIN":
      return safeEqual(Buffer.from(normalizePassword(password)), Buffer.from(normalizePassword(stored.data)));
    case "CRAM-MD5": {
      const secret = cramMd5SecretFromDovecotHex(stored.data);
      const mine = deriveCramMd5Secret(password);
      return safeEqual(Buffer.concat([mine.outer, mine.inner]), Buffer.concat([secret.outer, secret.inner]));
    }
    case "SCRAM-SHA-256": {
      const scram = scramFromDovecot(stored.data);
      const mine = deriveScramSha256(password, scram.salt, scram.iterations);
      return safeEqual(mine.storedKey, scram.storedKey);
    }
  }
}

/** CRAM-MD5 works from a `{CRAM-MD5}` secret or a plaintext password; null otherwise. */
export function cramMd5SecretOf(stored: StoredPassword): CramMd5Secret | null {
  if (stored.scheme === "CRAM-MD5") return cramMd5SecretFromDovecotHex(stored.data);
  if (stored.scheme === "PLAIN") return deriveCramMd5Secret(stored.data);
  return null;
}

/** Dovecot's `{SCRAM-SHA-256}iterations,salt,storedKey,serverKey` (base64 fields). */
function scramFromDovecot(data: string): ScramCredentials {
  const [iter, salt, storedKey, serverKey, ...rest] = data.split(",");
  if (rest.length > 0 || !/^\d+$/.test(iter ?? "") || !salt || !storedKey || !serverKey) throw new Error("malformed {SCRAM-SHA-256} value");
  return {
    iterations: Number(iter),
    salt: Buffer.from(salt, "base64"),
    storedKey: Buffer.from(storedKey, "base64"),
    serverKey: Buffer.from(serverKey, "base64"),
  };
}

export function scramSecretOf(stored: StoredPassword): ScramCredentials | null {
  return stored.scheme === "SCRAM-SHA-256" ? scramFromDovecot(stored.data) : null;
}
