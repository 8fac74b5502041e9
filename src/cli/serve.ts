/** `postern serve`: run the listeners and the queue until SIGINT/SIGTERM. */
import { createLogger } from "../server/log.js";
import { startServer } from "../server/server.js";
import { resolveConfig } from "./config-source.js";
import { demoBanner, resetDemoUser } from "./demo.js";

export async function serveCommand(opts: { config?: string }): Promise<void> {
  const { config, demo } = resolveConfig(opts.config);
  const log = createLogger(config.log);
  const server = await startServer(config, log);
  if (demo) {
    const password = await resetDemoUser(server.store);
    process.stdout.write(demoBanner(config.dataDir, server.listeners, password));
  }
  const stop = async (signal: string) => {
    log.info({ event: "shutdown", signal }, "shutting down");
    await server.close();
    log.flush();
    process.exit(0);
  };
  process.once("SIGINT", () => void stop("SIGINT"));
  process.once("SIGTERM", () => void stop("SIGTERM"));
}
