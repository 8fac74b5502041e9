/**
 * Wiring for authentication: config → credential backends (src/auth/backends.ts), the
 * cross-connection AUTH throttle and the per-user sending limits (src/policy), in this process's
 * memory or, with store.backend postgres, counted across the cluster (src/store/pg/counters.ts).
 * Each connection's ports are built from these by src/policy/session-ports.ts (createPolicyPorts in server.ts).
 */
import type { Config } from "../config/schema.js";
import { AuthBackends, type BackendConfig } from "../auth/backends.js";
import { OAuthTokenVerifier } from "../auth/oauth-tokens.js";
import type { Authenticator } from "../auth/types.js";
import { AuthThrottle, type AuthThrottlePort } from "../policy/auth-throttle.js";
import { SendLimits } from "../policy/send-limits.js";
import type { SendLimitsPort } from "../smtp/session-types.js";
import { PgAuthThrottle, PgSendLimits } from "../store/pg/counters.js";
import type { PgPool } from "../store/pg/pool.js";
import type { Logger } from "./log.js";

export interface AuthWiring {
  backends: AuthBackends;
  /** This process's in-memory counters (shared between workers by shared-limits.ts). */
  throttle: AuthThrottle;
  sendLimits: SendLimits;
  /** What sessions count with: the two above, or with store.backend postgres the cluster's. */
  throttlePort: AuthThrottlePort;
  sendLimitsPort: SendLimitsPort;
  /** auth.throttle.lockoutSec, for the lockout log line. */
  lockoutSec: number;
  /** smtp.authzidAdmins: logins that may act as anyone (src/policy/authzid.ts). */
  authzidAdmins: readonly string[];
  close(): void;
}

function backendConfig(b: Omit<BackendConfig, "backend"> & { backend: BackendConfig["backend"] }): BackendConfig {
  return { backend: b.backend, path: b.path, socket: b.socket, service: b.service, realm: b.realm, timeoutMs: b.timeoutMs, scramHoldMs: b.scramHoldMs };
}

/** `pg`: the node's pool when store.backend is postgres (the counters then live there). */
export function createAuthWiring(config: Config, sqlite: Authenticator, log: Logger, pg?: PgPool): AuthWiring {
  const backends = new AuthBackends({
    defaultBackend: backendConfig(config.auth),
    domains: Object.fromEntries(Object.entries(config.auth.domains).map(([d, b]) => [d, backendConfig(b)])),
    sqlite,
    localDomains: config.domains,
    digestMd5: config.smtp.digestMd5,
    ...(config.auth.oauth ? { oauth: new OAuthTokenVerifier(config.auth.oauth) } : {}),
    log,
  });
  const throttle = new AuthThrottle(config.auth.throttle, config.limits.exempt);
  const sendLimits = new SendLimits(config.sendLimits);
  return {
    backends,
    throttle,
    sendLimits,
    throttlePort: pg ? new PgAuthThrottle(pg, config.auth.throttle, config.limits.exempt, log) : throttle,
    sendLimitsPort: pg ? new PgSendLimits(pg, config.sendLimits, log) : sendLimits,
    lockoutSec: config.auth.throttle.lockoutSec,
    authzidAdmins: config.smtp.authzidAdmins,
    close: () => backends.close(),
  };
}
