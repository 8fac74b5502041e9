/**
 * Steering a running server: SIGHUP reload (certificates, limits) without dropping sessions, and
 * the SIGTERM drain (stop accepting, let transactions in flight finish within a bound).
 */
import { once } from "node:events";
import type { Server as NetServer, Socket } from "node:net";
import type { SecureContext } from "node:tls";
import type { Config } from "../config/schema.js";
import type { SmtpConnection } from "./connection.js";
import { ensureCertificate, loadTlsMaterial, secureContextOf } from "./tls.js";
import type { Logger } from "./log.js";

export interface OperateHandles {
  config: Config;
  log: Logger;
  servers: NetServer[];
  sockets: Set<Socket>;
  registries: { mode: string; connections: Set<SmtpConnection> }[];
  setSecureContext(ctx: SecureContext): void;
}

export interface Operations {
  /** Open SMTP sessions per listener mode. */
  connectionCounts(): Record<string, number>;
  /** Re-reads the certificate and the limits from `fresh`; returns what changed. Throws when nothing was applied. */
  reload(fresh: Config): Promise<string[]>;
  /** Stops accepting and asks each session to end after its transaction; resolves when all are gone or `graceMs` passed. */
  drain(graceMs: number): Promise<{ remaining: number }>;
}

export function operations(h: OperateHandles): Operations {
  return {
    connectionCounts() {
      const counts: Record<string, number> = {};
      for (const r of h.registries) counts[r.mode] = (counts[r.mode] ?? 0) + r.connections.size;
      return counts;
    },

    async reload(fresh) {
      const changed: string[] = [];
      // Certificate first: if it does not load, nothing changes (the old one keeps serving).
      const certs = await ensureCertificate(fresh.tls, fresh.dataDir, fresh.hostname);
      // New handshakes (implicit TLS and STARTTLS) get the new context; running sessions keep theirs.
      h.setSecureContext(secureContextOf(loadTlsMaterial(certs, fresh.tls.minVersion)));
      changed.push("tls");
      // Sessions read the limits object at each check, so replacing its values in place reaches
      // new and running sessions alike without restarting anything.
      Object.assign(h.config.limits, fresh.limits);
      changed.push("limits");
      return changed;
    },

    async drain(graceMs) {
      for (const s of h.servers) s.close();
      for (const r of h.registries) for (const c of r.connections) c.shutdown();
      const open = [...h.sockets].filter((s) => !s.destroyed);
      if (open.length === 0) return { remaining: 0 };
      const timeout = new AbortController();
      const timer = setTimeout(() => timeout.abort(), graceMs);
      try {
        await Promise.all(open.map((s) => once(s, "close", { signal: timeout.signal })));
      } catch {
        // the grace period ended first
      } finally {
        clearTimeout(timer);
      }
      const remaining = [...h.sockets].filter((s) => !s.destroyed).length;
      h.log.info({ event: "drained", remaining }, remaining === 0 ? "all sessions finished" : "grace period over; cutting sessions");
      return { remaining };
    },
  };
}
