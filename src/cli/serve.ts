/** `postern serve`: run the listeners and the queue until SIGINT/SIGTERM. */
import { createLogger } from "../server/log.js";
import { startServer } from "../server/server.js";
import { resolveConfig } from "./config-source.js";
import { DEMO_USER, demoPassword } from "./demo.js";

export async function serveCommand(opts: { config?: string }): Promise<void> {
  const { config, demo } = resolveConfig(opts.config);
  const log = createLogger(config.log);
  const server = await startServer(config, log);
  if (demo) {
    const password = demoPassword();
    if (await server.store.lookupUser(DEMO_USER)) await server.store.setPassword(DEMO_USER, password);
    else await server.store.addUser(DEMO_USER, password);
    const port = (mode: string) => server.listeners.find((l) => l.mode === mode)?.port;
    process.stdout.write(
      [
        "",
        "Postern is running with the embedded demo configuration (no --config given):",
        `  data directory   ${config.dataDir}`,
        `  MTA              127.0.0.1:${port("mta")}   (mail for example.org from anyone)`,
        `  submission       127.0.0.1:${port("submission")}   (STARTTLS, then AUTH)`,
        `  submissions      127.0.0.1:${port("submissions")}   (implicit TLS, then AUTH)`,
        `  demo user        ${DEMO_USER}`,
        `  demo password    ${password}`,
        "",
        `Try: swaks --server 127.0.0.1:${port("submission")} --tls --auth PLAIN --auth-user ${DEMO_USER} \\`,
        `       --auth-password '${password}' --from ${DEMO_USER} --to ${DEMO_USER}`,
        "",
      ].join("\n") + "\n",
    );
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
