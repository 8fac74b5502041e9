/** Mechanism factories: one fresh object per AUTH attempt (SECURITY rule 12). */
import { CramMd5Client, CramMd5Server } from "./cram-md5.js";
import { DigestMd5Client, DigestMd5Server } from "./digest-md5.js";
import { LoginClient, LoginServer } from "./login.js";
import { PlainClient, PlainServer } from "./plain.js";
import { ScramSha256Client, ScramSha256Server } from "./scram-sha-256.js";
import type { SaslClientCredentials, SaslClientMechanism, SaslServerMechanism, SaslServerOptions } from "./types.js";

export type * from "./types.js";

/**
 * Every mechanism the server implements, strongest first (the order for the EHLO AUTH line).
 * DIGEST-MD5 is historic (RFC 6331): configuration should leave it off unless old clients need it.
 */
export const SERVER_MECHANISMS = ["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN", "DIGEST-MD5"] as const;
export type ServerMechanismName = (typeof SERVER_MECHANISMS)[number];

/** Case-insensitive; null for a mechanism we do not implement (→ 504 5.5.4). */
export function createServerMechanism(name: string, opts: SaslServerOptions): SaslServerMechanism | null {
  switch (name.toUpperCase()) {
    case "SCRAM-SHA-256": return new ScramSha256Server(opts);
    case "CRAM-MD5": return new CramMd5Server(opts);
    case "PLAIN": return new PlainServer(opts);
    case "LOGIN": return new LoginServer(opts);
    case "DIGEST-MD5": return new DigestMd5Server(opts);
    default: return null;
  }
}

export interface ClientMechanismOptions {
  /** The server's host name, for DIGEST-MD5's digest-uri (defaults to the realm it offers). */
  serverHostname?: string;
}

/** Case-insensitive; null for a mechanism we do not implement. */
export function createClientMechanism(
  name: string,
  creds: SaslClientCredentials,
  options: ClientMechanismOptions = {},
): SaslClientMechanism | null {
  switch (name.toUpperCase()) {
    case "SCRAM-SHA-256": return new ScramSha256Client(creds);
    case "CRAM-MD5": return new CramMd5Client(creds);
    case "PLAIN": return new PlainClient(creds);
    case "LOGIN": return new LoginClient(creds);
    case "DIGEST-MD5": return new DigestMd5Client(creds, options.serverHostname ? { serverHostname: options.serverHostname } : {});
    default: return null;
  }
}
