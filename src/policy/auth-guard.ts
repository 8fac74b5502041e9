/**
 * One connection's side of the cross-connection AUTH throttle (auth-throttle.ts): the session's
 * AuthGuard port, and the credential verifier with the per-account lockout in front of it.
 *
 * The account counted on failure is the login the current exchange tried. Our own mechanisms name
 * it when they ask the store (so a locked-out account is refused there, before any secret is
 * read); a Dovecot pass-through names it through `login` when the client's message (or Dovecot's
 * `user=`) does (docs/SECURITY.md 11.8).
 */
import type { AuthThrottle, AuthThrottlePort } from "./auth-throttle.js";
import type { AuthGuard } from "../smtp/session-types.js";
import type { CredentialVerifier } from "../sasl/types.js";

/** The guard of an in-memory throttle: it answers at once. */
export interface ImmediateAuthGuard extends AuthGuard {
  refusal(): string | null;
  failed(): number;
  succeeded(user: string): void;
}

export interface ConnectionAuthGuard<G extends AuthGuard = AuthGuard> {
  /** The session's port: refuse an AUTH from a locked-out IP, count failures, forget on success. */
  authGuard: G;
  /** Remembers the login an exchange names; throws (or rejects) when that account is locked out here. */
  login(user: string): void | Promise<void>;
  /** `verifier` with `login` asked first on every lookup. */
  verifier: CredentialVerifier;
}

/** f applied to v now, or once v resolves: an in-memory throttle's answers stay immediate. */
function andThen<T, U>(v: T | Promise<T>, f: (value: T) => U): U | Promise<U> {
  return v instanceof Promise ? v.then(f) : f(v);
}

export function guardConnection(
  throttle: AuthThrottle,
  remoteIp: string,
  verifier: CredentialVerifier,
  lockedOut: (scope: "ip" | "account", user: string | undefined) => void,
): ConnectionAuthGuard<ImmediateAuthGuard>;
export function guardConnection(
  throttle: AuthThrottlePort,
  remoteIp: string,
  verifier: CredentialVerifier,
  lockedOut: (scope: "ip" | "account", user: string | undefined) => void,
): ConnectionAuthGuard;
export function guardConnection(
  throttle: AuthThrottlePort,
  remoteIp: string,
  verifier: CredentialVerifier,
  /** Told once for each lockout a failure starts (for the log). */
  lockedOut: (scope: "ip" | "account", user: string | undefined) => void,
): ConnectionAuthGuard {
  let tried: string | undefined;
  const login = (user: string) => {
    tried = user;
    return andThen(throttle.checkAccount(remoteIp, user), (verdict) => {
      if (verdict.refused) throw new Error(`account throttled for ${verdict.retryAfterSec} s`);
    });
  };
  const v = verifier;
  const guarded: CredentialVerifier = {
    // A refused password check is a failed check (454 via backend-error), not an exception.
    verifyPassword: async (user, password, context) => {
      try {
        await login(user);
      } catch (err) {
        return { ok: false, reason: "backend-error", detail: (err as Error).message };
      }
      // The connection's address: an app password records where it was last used from.
      return v.verifyPassword(user, password, { remoteIp, ...context });
    },
    // The account counted: the a=/user= named, then the token's own login once it is known.
    ...(v.verifyToken
      ? {
          verifyToken: async (token: string, claimedUser?: string) => {
            try {
              if (claimedUser) await login(claimedUser);
              const result = await v.verifyToken!(token, claimedUser);
              if (result.user) await login(result.user);
              return result;
            } catch (err) {
              return { ok: false as const, reason: "backend-error" as const, detail: (err as Error).message };
            }
          },
        }
      : {}),
    scramSha256: async (user) => (await login(user), v.scramSha256(user)),
    cramMd5: async (user) => (await login(user), v.cramMd5(user)),
    digestMd5: async (user, realm) => (await login(user), v.digestMd5(user, realm)),
    // The connection's address again: where the app password was last used from.
    ...(v.appPasswordUsed ? { appPasswordUsed: (user: string, name: string) => v.appPasswordUsed!(user, name, { remoteIp }) } : {}),
    credentials: () => v.credentials(),
    // SCRAM fakes an unknown login's salt and iteration count from these (docs/SECURITY.md 11.4).
    loginKey: (user) => v.loginKey?.(user) ?? user,
    ...(v.hasUser ? { hasUser: (user: string) => v.hasUser!(user) } : {}),
    ...(v.scramShape ? { scramShape: (user: string) => v.scramShape!(user) } : {}),
  };
  const authGuard: AuthGuard = {
    refusal() {
      tried = undefined;
      return andThen(throttle.checkIp(remoteIp), (verdict) => (verdict.refused ? `${verdict.scope} locked out for ${verdict.retryAfterSec} s` : null));
    },
    failed() {
      const user = tried;
      return andThen(throttle.failed(remoteIp, user), ({ penaltyMs, locked }) => {
        for (const scope of locked) lockedOut(scope, scope === "account" ? user : undefined);
        return penaltyMs;
      });
    },
    succeeded(user) {
      return throttle.succeeded(remoteIp, tried ?? user);
    },
  };
  return { authGuard, login, verifier: guarded };
}
