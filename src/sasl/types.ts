/**
 * SASL contracts shared by the server (SMTP AUTH) and the client (outbound AUTH, `postern send`).
 * Mechanisms work on decoded bytes: base64 is the SMTP layer's business (RFC 4954 §4).
 */

/** Who authenticated. `authzid` is the identity to act as (equal to authcid unless permitted). */
export interface SaslIdentity {
  authcid: string;
  authzid: string;
  /** The app password's name when one was used instead of the main password (logged, never its value). */
  credential?: string;
}

/** Why an exchange failed; logged by the server, never shown to the client. */
export type SaslFailureReason =
  | "malformed" // syntax of the client's message is wrong → 501 5.5.2
  | "unknown-user" // → 535 5.7.8
  | "bad-password" // → 535 5.7.8
  | "authzid-not-permitted" // → 535 5.7.8
  | "mechanism-unavailable" // the store lacks the secret this mechanism needs → 535 5.7.8
  | "no-usable-secret" // the user exists, but its stored secret cannot serve this mechanism → 535 5.7.8
  | "app-password-required" // the main password was right, but this user logs in with app passwords only → 535 5.7.8
  | "bad-token" // OAUTHBEARER/XOAUTH2: the bearer token failed a check (after the error challenge) → 535 5.7.8
  | "channel-binding" // SCRAM -PLUS: binding missing, unsupported or not this connection's; or "y" while we offer it → 535 5.7.8
  | "backend-error"; // → 454 4.7.0

export type SaslServerStep =
  | { kind: "challenge"; data: Buffer } // server sends "334 " + base64(data)
  | { kind: "success"; identity: SaslIdentity }
  | { kind: "failure"; reason: SaslFailureReason; detail?: string };

/** One object per AUTH attempt (SECURITY.md rule 12); never reused after success or failure. */
export interface SaslServerMechanism {
  readonly name: string;
  /**
   * First step. `initial` is the decoded initial response from `AUTH MECH <ir>`:
   * null when none was given, an empty Buffer for "=".
   */
  start(initial: Buffer | null): Promise<SaslServerStep>;
  /** Each further client response (decoded). */
  step(response: Buffer): Promise<SaslServerStep>;
}

export interface ScramKeys {
  storedKey: Buffer;
  serverKey: Buffer;
}

/**
 * A user's SCRAM secrets. App passwords are derived with the user's salt and iteration count: the
 * server names those in its first message, before it can know which credential the client holds.
 */
export interface ScramCredentials extends ScramKeys {
  salt: Buffer;
  iterations: number;
  /** The user's app passwords (src/auth/app-password.ts), each checked against the proof. */
  appPasswords?: AppPasswordSecret<ScramKeys>[];
  /** The main password must not log in (requireAppPasswords): its match fails as app-password-required. */
  mainRefused?: boolean;
}

/**
 * CRAM-MD5 secret as Dovecot stores it: the MD5 chaining state after one block of
 * (key XOR ipad) and after one block of (key XOR opad), 16 bytes each.
 */
export interface CramMd5Secret extends CramMd5State {
  appPasswords?: AppPasswordSecret<CramMd5State>[];
  mainRefused?: boolean;
}

export interface CramMd5State {
  inner: Buffer;
  outer: Buffer;
}

/** One app password's derived secret; several per name (the forms a user may type). */
export interface AppPasswordSecret<S> {
  name: string;
  secret: S;
}

export type VerifyResult =
  | { ok: true; user: string /** The app password's name, when one matched. */; credential?: string }
  | { ok: false; reason: "unknown-user" | "bad-password" | "app-password-required" | "backend-error"; detail?: string };

/** Who is asking: the store records an app password's last use from it. */
export interface VerifyContext {
  remoteIp?: string;
}

/**
 * What a mechanism needs from the credential store: the password checked by the store
 * (PLAIN, LOGIN), or a secret derived from it that the mechanism checks itself.
 */
export type CredentialKind = "password" | "scram-sha-256" | "cram-md5" | "digest-md5" | "bearer-token";

/** A bearer token's check (src/auth/oauth-tokens.ts); `user` on failure: whose it claimed to be (throttling). */
export type TokenResult =
  | { ok: true; user: string }
  | { ok: false; reason: "bad-token" | "unknown-user" | "backend-error"; detail?: string; user?: string; scope?: string };

/** What a credential backend offers to the mechanisms. Unknown users cost the same as known ones. */
export interface CredentialVerifier {
  verifyPassword(user: string, password: string, context?: VerifyContext): Promise<VerifyResult>;
  /** OAUTHBEARER/XOAUTH2: the token's login; `claimedUser` (a=, user=) must be that login. Absent: no tokens. */
  verifyToken?(token: string, claimedUser?: string): Promise<TokenResult>;
  /** null when the user is unknown or the secret is not stored. */
  scramSha256(user: string): Promise<ScramCredentials | null>;
  cramMd5(user: string): Promise<CramMd5Secret | null>;
  /** HA1 = MD5(user ":" realm ":" password), 16 bytes; null when unknown. */
  digestMd5(user: string, realm: string): Promise<Buffer | null>;
  /** A mechanism that checks derived secrets itself (SCRAM, CRAM-MD5) logged in with app password `name`. */
  appPasswordUsed?(user: string, name: string, context?: VerifyContext): void;
  /**
   * True when the store knows the user: asked only after a secret lookup returned null, so the
   * admin's log can tell "no such user" from "this user's secret cannot serve the mechanism". The
   * client sees the same 535 either way. Absent: every missing secret is an unknown user.
   */
  hasUser?(user: string): boolean;
  /**
   * The kinds of credential this store can serve, e.g. ["password", "scram-sha-256"]: the
   * mechanisms it can verify are derived from these (mechanismsFor in registry.ts).
   */
  credentials(): readonly CredentialKind[];
  /**
   * The login as this store finds it: trimmed and case-folded exactly as its lookups fold. Values
   * faked for an unknown login (a SCRAM salt) derive from it, so they change with the spelling
   * exactly when a real user's would (SECURITY rule 14). Absent: the name as sent.
   */
  loginKey?(user: string): string;
  /** The SCRAM iteration count and salt length a real user of this store has; faked for unknown ones. */
  scramShape?(user: string): ScramShape;
}

export interface ScramShape {
  iterations: number;
  saltBytes: number;
}

export interface SaslServerOptions {
  verifier: CredentialVerifier;
  /** Server host name: used in CRAM-MD5 challenges and as the DIGEST-MD5 realm. */
  hostname: string;
  /** May `authcid` act as a different `authzid`? Default policy: only when equal. */
  authzidAllowed(authcid: string, authzid: string): boolean;
  /** Secret used to fake SCRAM salts for unknown users (no user-existence oracle). */
  fakeSaltKey: Buffer;
  /** RFC 9266 tls-exporter data of this TLS 1.3 connection; null or absent: no channel binding (no -PLUS). */
  channelBinding?: () => Buffer | null;
}

export interface SaslClientCredentials {
  username: string;
  password: string;
  authzid?: string;
}

export interface SaslClientMechanism {
  readonly name: string;
  /** Initial response to send with AUTH, or null when the mechanism starts with a server challenge. */
  initial(): Buffer | null;
  /** Answer a decoded server challenge. Throws when the server's proof (SCRAM) is wrong. */
  respond(challenge: Buffer): Buffer;
}

export interface ClientMechanismOptions {
  /** The server's host name, for DIGEST-MD5's digest-uri (defaults to the realm it offers). */
  serverHostname?: string;
  /** RFC 9266 tls-exporter data of this TLS 1.3 connection: -PLUS binds to it; plain SCRAM then says "y". */
  channelBinding?: () => Buffer | null;
}

/**
 * One SASL mechanism as the registry (registry.ts) knows it: each mechanism file exports one.
 * Adding a mechanism is that file plus one line in the registry.
 */
export interface MechanismDescriptor {
  /** The IANA SASL name, upper case. */
  readonly name: string;
  /** The credential a store must serve for the server side to verify it. */
  readonly needs: CredentialKind;
  /** The client sends the password itself (base64 hides nothing): only safe under TLS. */
  readonly plaintext: boolean;
  /** Historic or risky: offered only when the configuration turns it on (DIGEST-MD5, RFC 6331). */
  readonly optIn?: boolean;
  /** Binds to the TLS connection (SCRAM -PLUS): offered only where channel binding data exists (TLS 1.3). */
  readonly channelBinding?: boolean;
  /** A fresh server object per AUTH attempt (SECURITY rule 12). */
  createServer(opts: SaslServerOptions): SaslServerMechanism;
  createClient(creds: SaslClientCredentials, options: ClientMechanismOptions): SaslClientMechanism;
  /**
   * The login the client's first message names, when it can be read: a pass-through to Dovecot
   * counts failures against it and refuses a locked-out account early (docs/SECURITY.md 11.8).
   */
  loginInFirstMessage?(message: Buffer): string | undefined;
}
