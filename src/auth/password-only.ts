/**
 * A store that checks plaintext passwords and hands out no secrets (saslauthd, Dovecot driven by
 * our own PLAIN/LOGIN): only the password mechanisms can use it, and it has no user directory.
 */
import type { Authenticator, UserInfo } from "./types.js";
import type { CredentialKind, VerifyResult } from "../sasl/types.js";

export abstract class PasswordOnlyAuthenticator implements Authenticator {
  abstract verifyPassword(user: string, password: string): Promise<VerifyResult>;
  async scramSha256(): Promise<null> {
    return null;
  }
  async cramMd5(): Promise<null> {
    return null;
  }
  async digestMd5(): Promise<null> {
    return null;
  }
  credentials(): readonly CredentialKind[] {
    return ["password"];
  }
  /** No directory: accounts come from the local user store (or the login itself). */
  async lookupUser(): Promise<UserInfo | null> {
    return null;
  }
  close(): void {}
}
