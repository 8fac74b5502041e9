/**
 * The tests' one in-memory credential store (SASL mechanism tests and the session harness):
 * passwords in a map, SCRAM-SHA-256, CRAM-MD5 and DIGEST-MD5 secrets derived from them for real,
 * and a record of every call so a test can see what a mechanism asked the store.
 */
import { deriveCramMd5Secret, deriveDigestMd5Ha1, deriveScramSha256 } from "../../src/sasl/secrets.js";
import type { CramMd5Secret, CredentialKind, CredentialVerifier, ScramCredentials, VerifyResult } from "../../src/sasl/types.js";

/** Login → password, or an account record that carries its password. */
export type MemoryAccounts = Record<string, string | { password: string }>;

export class MemoryVerifier implements CredentialVerifier {
  /** Every call in order: "verifyPassword:tim", "cramMd5:tim", "digestMd5:tim:realm", ... */
  readonly calls: string[] = [];
  /** What credentials() reports; narrow it to play a store without some secrets. */
  kinds: CredentialKind[] = ["password", "scram-sha-256", "cram-md5", "digest-md5"];
  /** When set, every call throws (a broken backend: database locked, server gone). */
  broken = false;
  private readonly passwords = new Map<string, string>();
  private readonly scram = new Map<string, ScramCredentials>();

  constructor(accounts: MemoryAccounts) {
    for (const [login, account] of Object.entries(accounts)) {
      const password = typeof account === "string" ? account : account.password;
      this.passwords.set(login, password);
      this.scram.set(login, deriveScramSha256(password));
    }
  }

  /** Replaces a user's SCRAM credentials (the RFC test vectors use a fixed salt and count). */
  setScram(user: string, credentials: ScramCredentials): void {
    this.scram.set(user, credentials);
  }

  async verifyPassword(user: string, password: string): Promise<VerifyResult> {
    this.call(`verifyPassword:${user}`);
    const expected = this.passwords.get(user);
    if (expected === undefined) return { ok: false, reason: "unknown-user" };
    return expected === password ? { ok: true, user } : { ok: false, reason: "bad-password" };
  }

  async scramSha256(user: string): Promise<ScramCredentials | null> {
    this.call(`scramSha256:${user}`);
    return this.scram.get(user) ?? null;
  }

  async cramMd5(user: string): Promise<CramMd5Secret | null> {
    this.call(`cramMd5:${user}`);
    const password = this.passwords.get(user);
    return password === undefined ? null : deriveCramMd5Secret(password);
  }

  async digestMd5(user: string, realm: string): Promise<Buffer | null> {
    this.call(`digestMd5:${user}:${realm}`);
    const password = this.passwords.get(user);
    return password === undefined ? null : deriveDigestMd5Ha1(user, realm, password);
  }

  credentials(): readonly CredentialKind[] {
    return this.kinds;
  }

  private call(name: string): void {
    this.calls.push(name);
    if (this.broken) throw new Error("credential store unavailable");
  }
}
