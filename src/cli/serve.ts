/** `postern serve`: run the listeners and the queue until SIGINT/SIGTERM. */
import { createLogger } from "../server/log.js";
import { Metrics } from "../server/metrics.js";
import { operate } from "./serve-operate.js";
import { startServer } from "../server/server.js";
import { resolveConfig } from "./config-source.js";
import { demoBanner, resetDemoUser } from "./demo.js";

export async function serveCommand(opts: { config?: string }): Promise<void> {
  const { config, demo } = resolveConfig(opts.config);
  const metrics = new Metrics();
  const log = createLogger(config.log, process.stdout, metrics.observe);
  const server = await startServer(config, log);
  if (demo) {
    const password = await resetDemoUser(server.store);
    process.stdout.write(demoBanner(config.dataDir, server.listeners, password));
  }
  // SIGTERM drains (process.shutdownGraceMs), SIGINT stops at once, SIGHUP reloads: serve-operate.ts.
  await operate({ config, server, metrics, log, reloadConfig: () => resolveConfig(opts.config).config });
}
