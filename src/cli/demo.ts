/**
 * The embedded default: what `postern serve` runs without a config file. Unprivileged ports on
 * loopback, SQLite users, a generated certificate and one demo user whose fresh password is printed.
 */
import { randomBytes } from "node:crypto";
import type { UserStoreAdmin } from "../auth/user-store-rules.js";

export const DEMO_USER = "demo@example.org";

export function demoConfig(): Record<string, unknown> {
  return {
    hostname: "localhost",
    dataDir: "./data",
    domains: ["example.org"],
    mynetworks: [],
    listeners: [
      { address: "127.0.0.1", port: 2525, mode: "mta" },
      { address: "127.0.0.1", port: 2587, mode: "submission" },
      { address: "127.0.0.1", port: 2465, mode: "submissions" },
    ],
    delivery: { maildir: "./data/mail/{domain}/{localpart}" },
    log: { format: "pretty" },
    // One process: the demo is for trying Postern out, not for load.
    process: { workers: 1 },
  };
}

/** Creates the demo user, or gives it a fresh password: the printed one is always true. */
export async function resetDemoUser(store: UserStoreAdmin): Promise<string> {
  const password = randomBytes(12).toString("base64url");
  if (await store.lookupUser(DEMO_USER)) await store.setPassword(DEMO_USER, password);
  else await store.addUser(DEMO_USER, password);
  return password;
}

export function demoBanner(dataDir: string, listeners: { mode: string; port: number }[], password: string): string {
  const port = (mode: string) => listeners.find((l) => l.mode === mode)?.port;
  return (
    [
      "",
      "Postern is running with the embedded demo configuration (no --config given):",
      `  data directory   ${dataDir}`,
      `  MTA              127.0.0.1:${port("mta")}   (mail for example.org from anyone)`,
      `  submission       127.0.0.1:${port("submission")}   (STARTTLS, then AUTH)`,
      `  submissions      127.0.0.1:${port("submissions")}   (implicit TLS, then AUTH)`,
      `  demo user        ${DEMO_USER}`,
      `  demo password    ${password}`,
      "",
      `Try: swaks --server 127.0.0.1:${port("submission")} --tls --auth PLAIN --auth-user ${DEMO_USER} \\`,
      `       --auth-password '${password}' --from ${DEMO_USER} --to ${DEMO_USER}`,
      "",
    ].join("\n") + "\n"
  );
}
