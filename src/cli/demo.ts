/**
 * The embedded default: what `postern serve` runs without a config file. Unprivileged ports on
 * loopback, SQLite users, a generated certificate and one demo user whose fresh password is printed.
 */
import { randomBytes } from "node:crypto";

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
  };
}

export function demoPassword(): string {
  return randomBytes(12).toString("base64url");
}
