/**
 * Config → the abuse limiters: one ClientLimits per server (with its periodic `limits` log line)
 * and one ConnectionGuard per connection.
 */
import type { Config, ListenerConfig } from "../config/schema.js";
import { ClientLimits } from "../policy/client-limits.js";
import { ConnectionGuard } from "./connection-guard.js";
import type { Logger } from "./log.js";

export interface ServerLimits {
  limits: ClientLimits;
  stop(): void;
}

export function createClientLimits(config: Config, log: Logger): ServerLimits {
  // Read through config.limits each time: a reload replaces its values in place (operate.ts).
  const limits = new ClientLimits(() => ({ ...config.limits.connections, exempt: config.limits.exempt }), config.hostname);
  let logged = limits.changeCount;
  // Counters in the log only when they moved: an idle server stays quiet.
  const timer = setInterval(() => {
    if (limits.changeCount === logged) return;
    logged = limits.changeCount;
    log.info({ event: "limits", ...limits.snapshot() }, "limit counters");
  }, config.limits.logIntervalMs);
  timer.unref();
  return { limits, stop: () => clearInterval(timer) };
}

export function connectionGuard(config: Config, lc: ListenerConfig, exempt: boolean, limits: ClientLimits, log: Logger): ConnectionGuard {
  return new ConnectionGuard({
    hostname: config.hostname,
    mode: lc.mode,
    unauthCommands: config.limits.unauthCommands,
    // limits.exempt skips penalties; the hard error and AUTH-failure caps stay (they are the session's).
    tarpit: exempt ? null : config.limits.tarpit,
    minDataRate: config.limits.minDataRate,
    sessionLifetimeMs: config.limits.sessionLifetimeMs,
    log,
    ended: (limit) => limits.countEnded(limit),
  });
}
