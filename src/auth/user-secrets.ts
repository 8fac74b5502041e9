/**
 * Everything a user record keeps about a password, computed once when the password is set:
 * the scrypt hash (PLAIN, LOGIN) and the per-mechanism secrets (SCRAM-SHA-256, CRAM-MD5,
 * DIGEST-MD5). None of them is the plaintext password.
 */
import { hashPassword, verifyPasswordHash } from "./password-hash.js";
import { deriveCramMd5Secret, deriveDigestMd5Ha1, deriveScramSha256, SCRAM_DEFAULT_ITERATIONS } from "../sasl/secrets.js";
import type { CramMd5Secret, ScramCredentials } from "../sasl/types.js";

/** How passwords are hashed and checked; injectable so tests can watch the dummy-hash path. */
export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(password: string, stored: string): Promise<boolean>;
}

export const SCRYPT_HASHER: PasswordHasher = { hash: (pw) => hashPassword(pw), verify: verifyPasswordHash };

export interface UserSecrets {
  passwordHash: string;
  scram: ScramCredentials;
  cramMd5: CramMd5Secret;
  /** MD5(address ":" realm ":" password); valid only for `digestRealm`. */
  digestHa1: Buffer;
  digestRealm: string;
}

export async function generateSecretsFor(
  password: string,
  address: string,
  realm: string,
  /** scramSalt: keep the user's salt (its app passwords' SCRAM keys depend on it). */
  options: { hasher?: PasswordHasher; scramIterations?: number; scramSalt?: Buffer } = {},
): Promise<UserSecrets> {
  if (password === "") throw new Error("empty password refused");
  return {
    passwordHash: await (options.hasher ?? SCRYPT_HASHER).hash(password),
    scram: deriveScramSha256(password, options.scramSalt, options.scramIterations ?? SCRAM_DEFAULT_ITERATIONS),
    cramMd5: deriveCramMd5Secret(password),
    digestHa1: deriveDigestMd5Ha1(address, realm, password),
    digestRealm: realm,
  };
}
