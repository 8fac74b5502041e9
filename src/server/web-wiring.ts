/**
 * The web face's wiring (`web:` in the config, src/web): the apps in the order they see each
 * request, and the HTTPS listener that serves them. server.ts binds its port before the privilege
 * drop and starts it here once the SMTP listeners' real ports are known (autoconfig announces those).
 */
import type { SecureContext } from "node:tls";
import type { Config } from "../config/schema.js";
import type { QueueAdmin } from "../queue/admin.js";
import { createAutoconfigApp } from "../web/autoconfig.js";
import { clientSettingsOf } from "../web/autoconfig-settings.js";
import { profileSignerFor } from "../web/autoconfig-mobileconfig.js";
import { startWebServer, type WebServer } from "../web/listener.js";
import type { WebApp } from "../web/types.js";
import type { AuthWiring } from "./auth-wiring.js";
import type { Logger } from "./log.js";
import type { HourlyCounters } from "./hourly-counters.js";
import { dkimKeysDir } from "../dkim/keys.js";
import { createUiApp } from "../web/ui/app.js";
import type { TlsMaterial } from "./tls.js";
import type { HeldListener } from "./held-listener.js";
import type { UserStore } from "../store/user-store.js";

/** What the web apps may use of the running server. */
export interface WebWiringDeps {
  /** web.port, bound before the privilege drop (server.ts); it serves from the start here. */
  bound: HeldListener;
  config: Config;
  log: Logger;
  /** The bound SMTP listeners (real ports). */
  listeners: { mode: string; address: string; port: number }[];
  /** The built-in user store, SQLite or PostgreSQL. */
  store: UserStore;
  auth: AuthWiring;
  queueAdmin: QueueAdmin;
  /** Open SMTP sessions per listener mode (the admin dashboard). */
  sessionsOpen: () => Record<string, number>;
  /** Per-hour counts from the log (Metrics.hourly), when the server was started with them. */
  hourly?: HourlyCounters;
  tls: TlsMaterial;
  /** The current server TLS context (a SIGHUP reload swaps it). */
  secureContext: () => SecureContext;
}

/** The apps, in order: the first that answers a request ends it. */
export function webApps(d: WebWiringDeps): WebApp[] {
  return [
    createAutoconfigApp(() => clientSettingsOf(d.config, d.listeners), d.log, profileSignerFor(d.tls.cert, d.tls.key)),
    createUiApp({
      admins: d.config.web.admins,
      adminFrom: d.config.web.adminFrom,
      sessionIdleSec: d.config.web.sessionIdleSec,
      sessionMaxSec: d.config.web.sessionMaxSec,
      store: d.store,
      verifier: d.auth.backends.verifier,
      throttle: d.auth.throttlePort,
      lockoutSec: d.auth.lockoutSec,
      queue: d.queueAdmin,
      dkim: { keysDir: dkimKeysDir(d.config), retiredGraceDays: d.config.dkim.retiredGraceDays },
      sessionsOpen: d.sessionsOpen,
      ...(d.hourly ? { hourly: d.hourly } : {}),
      mobileconfig: Object.values(d.config.web.incoming ?? {}).some((v) => v !== undefined),
      log: d.log,
    }),
  ];
}

export async function startWebFromConfig(d: WebWiringDeps): Promise<WebServer> {
  return startWebServer(
    {
      address: d.config.web.address,
      port: d.config.web.port ?? 0,
      bound: d.bound,
      tls: { cert: d.tls.cert, key: d.tls.key, minVersion: d.tls.minVersion, context: d.secureContext },
    },
    webApps(d),
    d.log,
  );
}
