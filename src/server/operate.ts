/**
 * Steering a running server: SIGHUP reload (certificates, limits) without dropping sessions, and
 * the SIGTERM drain (stop accepting, let transactions in flight finish within a bound).
 */
import { once } from "node:events";
import type { Server as NetServer, Socket } from "node:net";
import type { Config } from "../config/schema.js";
import type { SmtpConnection } from "./connection.js";
import { ensureCertificate, loadTlsMaterial, secureContextOf, type TlsContexts, type TlsMaterial } from "./tls.js";
import { checkTlsPair, type ConfigSource } from "./startup-errors.js";
import type { Logger } from "./log.js";

export interface OperateHandles {
  config: Config;
  log: Logger;
  servers: NetServer[];
  sockets: Set<Socket>;
  registries: { mode: string; connections: Set<SmtpConnection> }[];
  /** Where the configuration came from (reload errors name it). */
  source?: ConfigSource;
  /** The certificate and key in use, to tell whether a reload brings new ones. */
  tlsMaterial: TlsMaterial;
  setSecureContext(contexts: TlsContexts): void;
}

/** What a reload did. */
export interface ReloadReport {
  /** Applied now: "tls" (certificate, key or minVersion), and each changed limit ("limits.errors"). */
  changed: string[];
  /** Different in the file but read only at start (domains, listeners, …): not applied until a restart. */
  restartNeeded: string[];
}

export interface Operations {
  /** Open SMTP sessions per listener mode. */
  connectionCounts(): Record<string, number>;
  /** Applies the certificate and the limits from `fresh`; reports what changed. Throws when nothing was applied. */
  reload(fresh: Config): Promise<ReloadReport>;
  /** Stops accepting and asks each session to end after its transaction; resolves when all are gone or `graceMs` passed. */
  drain(graceMs: number): Promise<{ remaining: number }>;
}

/**
 * Limits read when something is built at start (the `limits` log timer, the AUTH throttle's
 * exempt list): a new value needs a restart. Every other limit is read for each new session or
 * check (server.ts builds session settings per connection; limits-wiring.ts reads config.limits).
 */
const LIMITS_READ_AT_START = new Set(["logIntervalMs", "exempt"]);
/** The tls keys a reload applies (the certificate files and the minimum version). */
const TLS_APPLIED = new Set(["cert", "key", "minVersion"]);

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === "object" && v !== null && !Array.isArray(v);

function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => same(x, b[i]));
  if (isPlain(a) && isPlain(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) if (!same(a[k], b[k])) return false;
    return true;
  }
  return false;
}

/** Dotted paths of the leaves that differ (arrays count as one value). */
export function changedPaths(prefix: string, a: unknown, b: unknown): string[] {
  if (isPlain(a) && isPlain(b)) {
    const out: string[] = [];
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) out.push(...changedPaths(prefix ? `${prefix}.${k}` : k, a[k], b[k]));
    return out;
  }
  return same(a, b) ? [] : [prefix];
}

/** The log line's text: what changed, and what waits for a restart. */
export function describeReload(r: ReloadReport): string {
  const applied = r.changed.length > 0 ? `applied ${r.changed.join(", ")}` : "nothing to apply";
  const waiting = r.restartNeeded.length > 0 ? `; restart needed for ${r.restartNeeded.join(", ")} (not applied)` : "";
  return `configuration reloaded: ${applied}${waiting}`;
}

export function operations(h: OperateHandles): Operations {
  return {
    connectionCounts() {
      const counts: Record<string, number> = {};
      for (const r of h.registries) counts[r.mode] = (counts[r.mode] ?? 0) + r.connections.size;
      return counts;
    },

    async reload(fresh) {
      const report: ReloadReport = { changed: [], restartNeeded: [] };
      const running = h.config;
      // Certificate first: if it does not load, nothing changes (the old one keeps serving). A
      // configured pair is checked as at start, so the log says "swapped" or "not a pair".
      const certs = await ensureCertificate(fresh.tls, fresh.dataDir, fresh.hostname);
      if (fresh.tls.cert && fresh.tls.key) checkTlsPair(certs, h.source ?? {});
      const material = loadTlsMaterial(certs, fresh.tls.minVersion);
      const contexts = secureContextOf(material);
      const current = h.tlsMaterial;
      if (!material.cert.equals(current.cert) || !material.key.equals(current.key) || material.minVersion !== current.minVersion) {
        // New handshakes (implicit TLS and STARTTLS) get the new context; running sessions keep theirs.
        h.setSecureContext(contexts);
        h.tlsMaterial = material;
        report.changed.push("tls");
      }
      for (const k of Object.keys(fresh.tls)) if (TLS_APPLIED.has(k)) (running.tls as Plain)[k] = (fresh.tls as Plain)[k];

      // Sessions and limiters read config.limits when they need a value, so replacing its values
      // in place reaches every new session and check without restarting anything.
      const limitPaths = changedPaths("limits", running.limits, fresh.limits);
      const limitKeys = new Set(limitPaths.map((p) => p.split(".")[1]!));
      for (const k of limitKeys) {
        if (LIMITS_READ_AT_START.has(k)) continue;
        (running.limits as Plain)[k] = (fresh.limits as Plain)[k];
      }
      for (const p of limitPaths) (LIMITS_READ_AT_START.has(p.split(".")[1]!) ? report.restartNeeded : report.changed).push(p);

      // Everything else was read once, at start.
      for (const key of new Set([...Object.keys(running), ...Object.keys(fresh)])) {
        if (key === "limits") continue;
        const a = (running as unknown as Plain)[key];
        const b = (fresh as unknown as Plain)[key];
        if (key === "tls" && isPlain(a) && isPlain(b)) {
          for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) if (!TLS_APPLIED.has(k) && !same(a[k], b[k])) report.restartNeeded.push(`tls.${k}`);
          continue;
        }
        if (!same(a, b)) report.restartNeeded.push(key);
      }
      return report;
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
