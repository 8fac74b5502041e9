/** `postern serve`: run the listeners and the queue until SIGINT/SIGTERM. */
import { createLogger } from "../server/log.js";
import { Metrics } from "../server/metrics.js";
import { operate } from "./serve-operate.js";
import { startServer } from "../server/server.js";
import { DEMO_PORT_ORDER, type ConfigSource } from "../server/startup-errors.js";
import { resolveConfig } from "./config-source.js";
import { demoBanner, resetDemoUser } from "./demo.js";
import type { Config } from "../config/schema.js";

export async function serveCommand(opts: { config?: string; demoPorts?: string }): Promise<void> {
  const demoBase = parseDemoPorts(opts.demoPorts);
  const load = (): { config: Config; source: ConfigSource } => {
    const resolved = resolveConfig(opts.config);
    if (demoBase !== undefined && !resolved.demo) {
      throw new Error(`--demo-ports moves the embedded demo's ports; with a configuration file (${resolved.path}), set listeners[].port there`);
    }
    if (resolved.demo && demoBase !== undefined) {
      for (const l of resolved.config.listeners) l.port = demoBase === 0 ? 0 : demoBase + DEMO_PORT_ORDER.indexOf(l.mode);
    }
    return { config: resolved.config, source: resolved.demo ? { demo: true } : { file: resolved.path ?? opts.config } };
  };
  const { config, source } = load();
  const metrics = new Metrics();
  const log = createLogger(config.log, process.stdout, metrics.observe);
  // Errors that stop the start name the setting and the file (src/server/startup-errors.ts).
  // process.workers > 1: this process is the primary, its workers serve SMTP (src/server/workers.ts).
  const server = await startServer(config, log, { source, hourly: metrics.hourly, ...(config.process.workers > 1 ? { role: { kind: "primary" } } : {}) });
  const workers = server.workers;
  if (workers) metrics.combineWith(() => workers.metrics());
  if (source.demo) {
    const password = await resetDemoUser(server.store);
    process.stdout.write(demoBanner(config.dataDir, server.listeners, password));
  }
  // SIGTERM drains (process.shutdownGraceMs), SIGINT stops at once, SIGHUP reloads: serve-operate.ts.
  await operate({ config, server, metrics, log, source, reloadConfig: () => load().config });
}

/** --demo-ports BASE: the demo listens on BASE (mta), BASE+1 (submission), BASE+2 (submissions); 0: any free ports. */
function parseDemoPorts(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const base = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!(base === 0 || (base >= 1 && base <= 65535 - (DEMO_PORT_ORDER.length - 1)))) {
    throw new Error(
      `--demo-ports takes a port number BASE (the demo then listens on BASE, BASE+1 and BASE+2), or 0 for any free ports; got ${JSON.stringify(value)}`,
    );
  }
  return base;
}
