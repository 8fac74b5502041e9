/**
 * The SASL mechanisms Postern implements, in one list. A new mechanism is one file exporting a
 * MechanismDescriptor (what it needs from the store, whether it is plaintext, its server and
 * client) plus one line here; the offered lists, the factories and the metrics' label set are
 * derived from this list, and what a store can verify from the credential kinds it declares.
 */
import { CRAM_MD5 } from "./cram-md5.js";
import { DIGEST_MD5 } from "./digest-md5.js";
import { LOGIN } from "./login.js";
import { OAUTHBEARER } from "./oauthbearer.js";
import { PLAIN } from "./plain.js";
import { SCRAM_SHA_256, SCRAM_SHA_256_PLUS } from "./scram-sha-256.js";
import { XOAUTH2 } from "./xoauth2.js";
import type { CredentialKind, MechanismDescriptor } from "./types.js";

/** Strongest first: the order of the EHLO AUTH line. */
export const MECHANISMS: readonly MechanismDescriptor[] = [SCRAM_SHA_256_PLUS, SCRAM_SHA_256, OAUTHBEARER, XOAUTH2, CRAM_MD5, PLAIN, LOGIN, DIGEST_MD5];

const BY_NAME = new Map(MECHANISMS.map((m) => [m.name, m]));

/** Case-insensitive; undefined for a mechanism we do not implement. */
export function findMechanism(name: string): MechanismDescriptor | undefined {
  return BY_NAME.get(name.toUpperCase());
}

/** Where a name stands in our preference order; unknown names (Dovecot's others) after ours. */
export function mechanismRank(name: string): number {
  const i = MECHANISMS.findIndex((m) => m.name === name.toUpperCase());
  return i < 0 ? MECHANISMS.length : i;
}

/**
 * The mechanisms a store serving `kinds` can verify, strongest first. An opt-in mechanism
 * (DIGEST-MD5) only when named in `optIn`; a channel-binding one (SCRAM -PLUS) only when `channelBound`
 * (the connection has tls-exporter data: TLS 1.3).
 */
export function mechanismsFor(kinds: Iterable<CredentialKind>, optIn: Iterable<string> = [], channelBound = false): string[] {
  const served = new Set(kinds);
  const wanted = new Set([...optIn].map((n) => n.toUpperCase()));
  return MECHANISMS.filter((m) => served.has(m.needs) && (!m.optIn || wanted.has(m.name)) && (!m.channelBinding || channelBound)).map((m) => m.name);
}
