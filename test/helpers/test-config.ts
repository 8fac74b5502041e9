/** The config every test server starts from: loopback listeners on ephemeral ports, a temp dir. */
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";

export function baseTestConfig(dir: string): Record<string, unknown> {
  return {
    hostname: "mail.example.org",
    dataDir: join(dir, "data"),
    domains: ["example.org"],
    listeners: [
      { address: "127.0.0.1", port: 0, mode: "mta" },
      { address: "127.0.0.1", port: 0, mode: "submission" },
      { address: "127.0.0.1", port: 0, mode: "submissions" },
    ],
    delivery: { maildir: join(dir, "mail/{domain}/{localpart}") },
    queue: { firstRetrySec: 1 },
    log: { level: "debug" },
    // Never the public DNS (nor the machine's resolver): a closed loopback port, so MX lookups fail fast.
    dns: { servers: ["127.0.0.1:9"] },
    // One process (the schema's default is one per core); test/e2e/workers*.test.ts set more.
    process: { workers: 1 },
  };
}

/** A loopback port that nothing listens on (yet). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, "127.0.0.1", () => ok()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((ok) => s.close(() => ok()));
  return port;
}
