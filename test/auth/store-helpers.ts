/** A SqliteUserStore on a fresh temp file, with a hasher that records what it was asked. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteUserStore, type SqliteUserStoreOptions } from "../../src/auth/sqlite-store.js";
import { hashPassword } from "../../src/auth/password-hash.js";
import { SCRYPT_HASHER, type PasswordHasher } from "../../src/auth/user-secrets.js";

export const HOSTNAME = "mail.example.org";

/**
 * Real scrypt with cheap parameters for new hashes (N=2^10): the store's logic is under test here,
 * not scrypt's cost. Verification parses parameters from the stored string, so the dummy hash
 * (unknown users) still costs the full default.
 */
export class RecordingHasher implements PasswordHasher {
  readonly verified: string[] = []; // the stored hashes verify() was called with
  hashes = 0;
  async hash(password: string): Promise<string> {
    this.hashes++;
    return hashPassword(password, { ln: 10, r: 8, p: 1 });
  }
  async verify(password: string, stored: string): Promise<boolean> {
    this.verified.push(stored);
    return SCRYPT_HASHER.verify(password, stored);
  }
}

export async function withStore<T>(
  body: (store: SqliteUserStore, ctx: { dir: string; path: string; hasher: RecordingHasher }) => Promise<T>,
  options: Partial<SqliteUserStoreOptions> = {},
): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "postern-auth-"));
  const path = join(dir, "users.sqlite");
  const hasher = new RecordingHasher();
  const store = new SqliteUserStore({ path, hostname: HOSTNAME, hasher, ...options });
  try {
    return await body(store, { dir, path, hasher });
  } finally {
    store.close();
    await rm(dir, { recursive: true, force: true });
  }
}
