/**
 * Wiring for authentication: config → credential backends (src/auth/backends.ts), the
 * cross-connection AUTH throttle and the per-user sending limits (src/policy), turned into the
 * session ports each connection gets.
 */
import { randomBytes } from "node:crypto";
import type { Config } from "../config/schema.js";
import { AuthBackends, type BackendConfig } from "../auth/backends.js";
import type { Authenticator } from "../auth/types.js";
import { AuthThrottle } from "../policy/auth-throttle.js";
import { SendLimits } from "../policy/send-limits.js";
import type { AuthGuard, SessionPorts } from "../smtp/session-types.js";
import type { CredentialVerifier } from "../sasl/types.js";
import type { Logger } from "./log.js";

export interface AuthWiring {
  backends: AuthBackends;
  throttle: AuthThrottle;
  sendLimits: SendLimits;
  /** The auth-related ports of one connection from `remoteIp`. */
  sessionPorts(connLog: Logger, remoteIp: string): Pick<SessionPorts, "mechanisms" | "createMechanism" | "account" | "authGuard" | "sendLimits">;
  close(): void;
}

function backendConfig(b: Omit<BackendConfig, "backend"> & { backend: BackendConfig["backend"] }): BackendConfig {
  return { backend: b.backend, path: b.path, socket: b.socket, service: b.service, realm: b.realm, timeoutMs: b.timeoutMs, scramHoldMs: b.scramHoldMs };
}

export function createAuthWiring(config: Config, sqlite: Authenticator, log: Logger): AuthWiring {
  const backends = new AuthBackends({
    defaultBackend: backendConfig(config.auth),
    domains: Object.fromEntries(Object.entries(config.auth.domains).map(([d, b]) => [d, backendConfig(b)])),
    sqlite,
    localDomains: config.domains,
    digestMd5: config.smtp.digestMd5,
    log,
  });
  const throttle = new AuthThrottle(config.auth.throttle, config.limits.exempt);
  const sendLimits = new SendLimits(config.sendLimits);
  const fakeSaltKey = randomBytes(32);
  const authzidAdmins = new Set(config.smtp.authzidAdmins.map((a) => a.toLowerCase()));

  return {
    backends,
    throttle,
    sendLimits,
    sessionPorts(connLog, remoteIp) {
      /**
       * The login the current exchange tried: counted per account on failure. Our mechanisms name
       * it when they ask the store; a Dovecot pass-through when the client's message (or Dovecot's
       * `user=`) names it (docs/SECURITY.md 11.8).
       */
      let tried: string | undefined;
      const lockedOut = (scope: string, user?: string) =>
        connLog.warn({ event: "auth-throttled", ip: remoteIp, scope, user, lockoutSec: config.auth.throttle.lockoutSec }, "AUTH throttled: too many failures");
      // Our own mechanisms ask the verifier for the login first: refuse a locked-out account there.
      const guarded = (user: string) => {
        tried = user;
        const verdict = throttle.checkAccount(remoteIp, user);
        if (verdict.refused) throw new Error(`account throttled for ${verdict.retryAfterSec} s`);
      };
      const v = backends.verifier;
      const verifier: CredentialVerifier = {
        verifyPassword: async (user, password) => {
          try {
            guarded(user);
          } catch (err) {
            return { ok: false, reason: "backend-error", detail: (err as Error).message };
          }
          return v.verifyPassword(user, password);
        },
        scramSha256: async (user) => (guarded(user), v.scramSha256(user)),
        cramMd5: async (user) => (guarded(user), v.cramMd5(user)),
        digestMd5: async (user, realm) => (guarded(user), v.digestMd5(user, realm)),
        supportedMechanisms: () => v.supportedMechanisms(),
        // SCRAM fakes an unknown login's salt and iteration count from these (docs/SECURITY.md 11.4).
        loginKey: (user) => v.loginKey?.(user) ?? user,
        ...(v.hasUser ? { hasUser: (user: string) => v.hasUser!(user) } : {}),
        ...(v.scramShape ? { scramShape: (user: string) => v.scramShape!(user) } : {}),
      };
      const authGuard: AuthGuard = {
        refusal() {
          tried = undefined;
          const verdict = throttle.checkIp(remoteIp);
          return verdict.refused ? `${verdict.scope} locked out for ${verdict.retryAfterSec} s` : null;
        },
        failed() {
          const { penaltyMs, locked } = throttle.failed(remoteIp, tried);
          for (const scope of locked) lockedOut(scope, scope === "account" ? tried : undefined);
          return penaltyMs;
        },
        succeeded(user) {
          throttle.succeeded(remoteIp, tried ?? user);
        },
      };
      return {
        mechanisms: () => backends.mechanisms(),
        createMechanism: (name) =>
          backends.createMechanism(
            name,
            { remoteIp, login: guarded },
            {
              hostname: config.hostname,
              authzidAllowed: (authcid, authzid) => authcid.toLowerCase() === authzid.toLowerCase() || authzidAdmins.has(authcid.toLowerCase()),
              fakeSaltKey,
            },
            verifier,
          ),
        account: (login) => backends.account(login),
        authGuard,
        sendLimits,
      };
    },
    close: () => backends.close(),
  };
}
