import type { CredentialVerifier } from "../sasl/types.js";

/** A user as the policy and delivery layers see it. */
export interface UserInfo {
  /** Canonical address, lower-case domain: "john@example.org". */
  address: string;
  /** Extra addresses or whole domains ("@example.net") this user may send as. */
  senders: string[];
  disabled: boolean;
  /** A mail server relaying for its domains: "@domain" senders include their subdomains (src/policy/sender.ts). */
  relayClient?: boolean;
}

/** A credential backend: verifies secrets and answers "does this local user exist?". */
export interface Authenticator extends CredentialVerifier {
  lookupUser(address: string): Promise<UserInfo | null>;
  close(): void;
}
