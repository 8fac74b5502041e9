/**
 * What `postern serve` does around the server in production: the admin listener (/metrics,
 * /healthz), the privilege drop after binding, SIGHUP reload and the SIGTERM drain.
 */
import type { Config } from "../config/schema.js";
import type { Logger } from "../server/log.js";
import type { Metrics } from "../server/metrics.js";
import type { RunningServer } from "../server/server.js";
import { startAdminServer, type AdminServer } from "../server/admin-http.js";
import { dropPrivileges, lookupIdentity } from "../server/privileges.js";

export interface ProductionHandles {
  config: Config;
  server: RunningServer;
  metrics: Metrics;
  log: Logger;
  /** Reads the configuration again (SIGHUP). */
  reloadConfig(): Config;
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
    admin = await startAdminServer({ address: config.admin.address, port: config.admin.port }, metrics, () => ({ ok: true, detail: { listeners: server.listeners.length, sessions: server.ops.connectionCounts() } }), log);
  }

  // Every socket is bound: root is no longer needed.
  if (config.process.user !== undefined) {
    const id = lookupIdentity(config.process.user, config.process.group);
    dropPrivileges(id, [config.dataDir]);
    log.info({ event: "privileges-dropped", user: id.user, uid: id.uid, gid: id.gid }, `running as ${id.user}`);
  }

  process.on("SIGHUP", () => {
    void (async () => {
      try {
        const changed = await server.ops.reload(h.reloadConfig());
        log.info({ event: "reload", ok: true, changed }, "configuration reloaded");
      } catch (err) {
        // The old certificate and limits stay in force: a broken file must not take mail down.
        log.error({ event: "reload", ok: false, err: err instanceof Error ? err.message : String(err) }, "reload failed; keeping the running configuration");
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
