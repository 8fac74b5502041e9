/** Mechanism factories: one fresh object per AUTH attempt (SECURITY rule 12). The list is registry.ts. */
import { findMechanism, MECHANISMS } from "./registry.js";
import type { ClientMechanismOptions, SaslClientCredentials, SaslClientMechanism, SaslServerMechanism, SaslServerOptions } from "./types.js";

export type * from "./types.js";
export { findMechanism, mechanismRank, mechanismsFor, MECHANISMS } from "./registry.js";

/**
 * Every mechanism the server implements, strongest first (the order for the EHLO AUTH line).
 * DIGEST-MD5 is historic (RFC 6331): configuration should leave it off unless old clients need it.
 */
export const SERVER_MECHANISMS: readonly string[] = MECHANISMS.map((m) => m.name);

/** Case-insensitive; null for a mechanism we do not implement (→ 504 5.5.4). */
export function createServerMechanism(name: string, opts: SaslServerOptions): SaslServerMechanism | null {
  return findMechanism(name)?.createServer(opts) ?? null;
}

/** Case-insensitive; null for a mechanism we do not implement. */
export function createClientMechanism(name: string, creds: SaslClientCredentials, options: ClientMechanismOptions = {}): SaslClientMechanism | null {
  return findMechanism(name)?.createClient(creds, options) ?? null;
}
