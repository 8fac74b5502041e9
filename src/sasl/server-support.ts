/** Steps every server mechanism shares: deciding the identity and asking the credential store. */
import { failure } from "./text.js";
import type { AppPasswordSecret, CredentialKind, CredentialVerifier, SaslServerOptions, SaslServerStep } from "./types.js";

/**
 * The identity after the secret checked out. `canonical` is the name the store reported (or the
 * name as sent when the store only hands out secrets). An authzid is honoured only when it names
 * the same user or the policy permits it (SECURITY rule 11; RFC 4616 §2, RFC 5802 §5.1 "a").
 */
export function resolveIdentity(opts: SaslServerOptions, sentName: string, canonical: string, authzid: string, credential?: string): SaslServerStep {
  const named = credential === undefined ? {} : { credential };
  if (authzid === "" || authzid === sentName || authzid === canonical) {
    return { kind: "success", identity: { authcid: canonical, authzid: canonical, ...named } };
  }
  let permitted: boolean;
  try {
    permitted = opts.authzidAllowed(canonical, authzid);
  } catch {
    return failure("backend-error", "authzid policy threw");
  }
  return permitted ? { kind: "success", identity: { authcid: canonical, authzid, ...named } } : failure("authzid-not-permitted");
}

/**
 * The store returned no secret: if it cannot serve this mechanism at all, say so (that reveals
 * nothing about the user); if it knows the user, its secret is the wrong kind (the log says so,
 * the client gets the same 535); otherwise the user is unknown.
 */
export function missingSecretReason(
  verifier: CredentialVerifier,
  needs: CredentialKind,
  user: string,
): "mechanism-unavailable" | "no-usable-secret" | "unknown-user" {
  if (!verifier.credentials().includes(needs)) return "mechanism-unavailable";
  return verifier.hasUser?.(user) ? "no-usable-secret" : "unknown-user";
}

/** Run a store call; a thrown error becomes `backend-error` (→ 454 4.7.0), never an exception. */
export async function askStore<T>(call: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; step: SaslServerStep }> {
  try {
    return { ok: true, value: await call() };
  } catch {
    return { ok: false, step: failure("backend-error", "credential store failed") };
  }
}

export type CredentialMatch = { kind: "main" } | { kind: "app"; name: string; index: number };

/**
 * Which of a user's credentials the client's proof matches: the main secret, else the first app
 * password's. Every candidate is computed (no early exit), so the time taken does not say which.
 */
export function whichCredential<S>(main: S, apps: readonly AppPasswordSecret<S>[] | undefined, matches: (secret: S) => boolean): CredentialMatch | null {
  let found: CredentialMatch | null = matches(main) ? { kind: "main" } : null;
  for (const [index, app] of (apps ?? []).entries()) {
    if (matches(app.secret) && found === null) found = { kind: "app", name: app.name, index };
  }
  return found;
}

/** The identity for a derived-secret match; the store hears of an app password's use (last used, from where). */
export function identityFor(opts: SaslServerOptions, match: CredentialMatch, mainRefused: boolean | undefined, user: string, authzid: string): SaslServerStep {
  if (match.kind === "main") {
    if (mainRefused) return failure("app-password-required", "main password refused: this user logs in with app passwords only");
    return resolveIdentity(opts, user, user, authzid);
  }
  const outcome = resolveIdentity(opts, user, user, authzid, match.name);
  if (outcome.kind === "success") opts.verifier.appPasswordUsed?.(user, match.name);
  return outcome;
}
