/**
 * What `postern serve` does around the server in production: the admin listener (/metrics,
 * /healthz), SIGHUP reload and the SIGTERM drain. (Root is dropped inside startServer, before
 * anything is served: src/server/server.ts.)
 */
import type { Config } from "../config/schema.js";
import { ConfigError } from "../config/load.js";
import type { Logger } from "../server/log.js";
import type { Metrics } from "../server/metrics.js";
import type { RunningServer } from "../server/server.js";
import { startAdminServer, type AdminServer } from "../server/admin-http.js";
import { describeReload } from "../server/operate.js";
import { StartupError, listenError, type ConfigSource } from "../server/startup-errors.js";

export interface ProductionHandles {
  config: Config;
  server: RunningServer;
  metrics: Metrics;
  log: Logger;
  /** Reads the configuration again (SIGHUP). */
  reloadConfig(): Config;
  /** Where the configuration came from (error messages name it). */
  source?: ConfigSource;
}

export async function operate(h: ProductionHandles): Promise<void> {
  const { config, server, metrics, log } = h;
  metrics.attach({
    connections: () => server.ops.connectionCounts(),
    queue: () => {
      const now = Date.now();
      let due = 0;
      let waiting = 0;
      for (const at of server.queue.scheduled().values()) at <= now ? due++ : waiting++;
      return { due, waiting };
    },
    limits: () => server.limits(),
  });
  let admin: AdminServer | undefined;
  if (config.admin.port !== undefined) {
    try {
      admin = await startAdminServer(
        { address: config.admin.address, port: config.admin.port },
        metrics,
        () => ({ ok: true, detail: { listeners: server.listeners.length, sessions: server.ops.connectionCounts() } }),
        log,
      );
    } catch (err) {
      // The server is up (lock, in-use marker): take it down cleanly before reporting.
      await server.close();
      throw listenError(
        err,
        { key: "admin.port", what: "the admin listener (admin)", address: config.admin.address, port: config.admin.port },
        h.source ?? {},
        {
          privilegesDropped: config.process.user !== undefined,
        },
      );
    }
  }

  process.on("SIGHUP", () => {
    void (async () => {
      try {
        const report = await server.ops.reload(h.reloadConfig());
        log.info({ event: "reload", ok: true, ...report }, describeReload(report));
      } catch (err) {
        // The old certificate and limits stay in force: a broken file must not take mail down.
        const detail =
          err instanceof StartupError
            ? err.brief
            : err instanceof ConfigError
              ? [err.message, ...err.problems].join("; ")
              : err instanceof Error
                ? err.message
                : String(err);
        log.error({ event: "reload", ok: false, err: detail }, "reload failed; keeping the running configuration");
      }
    })();
  });

  let stopping = false;
  const stop = async (signal: string, graceMs: number) => {
    if (stopping) return;
    stopping = true;
    log.info({ event: "shutdown", signal, graceMs }, "shutting down");
    const { remaining } = await server.ops.drain(graceMs);
    await admin?.close();
    await server.close();
    log.info({ event: "stopped", cut: remaining }, "stopped");
    log.flush();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM", config.process.shutdownGraceMs));
  process.on("SIGINT", () => void stop("SIGINT", 0));
}
