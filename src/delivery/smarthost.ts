/**
 * `relay.smarthost` from the configuration to what the router dials. The "host:port" form carries
 * no credentials and stays opportunistic (RFC 7435); a relay with AUTH is verified unless the
 * admin turned it off (schema default), against its own CA file when it has one.
 */
import { readFileSync } from "node:fs";
import type { Config } from "../config/schema.js";
import type { SmtpTlsMode } from "./smtp-client.js";

/** The relay the router dials: the configuration resolved (CA file read, verify → rejectUnauthorized). */
export interface SmarthostConfig {
  host: string;
  port: number;
  tls: SmtpTlsMode;
  auth?: { username: string; password: string; mechanism?: string };
  rejectUnauthorized?: boolean;
  ca?: string | Buffer;
  servername?: string;
  timeoutMs?: number;
}

export function smarthostFromConfig(relay: Config["relay"]): SmarthostConfig | undefined {
  const s = relay.smarthost;
  if (s === undefined) return undefined;
  if (typeof s === "string") {
    const i = s.lastIndexOf(":");
    return { host: s.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(s.slice(i + 1)), tls: "starttls-opportunistic", rejectUnauthorized: false };
  }
  return {
    host: s.host,
    port: s.port,
    tls: s.tls,
    auth: s.auth,
    rejectUnauthorized: s.verify,
    // Read once at start (and on restart): a missing file stops the start instead of deferring mail.
    ca: s.caFile === undefined ? undefined : readFileSync(s.caFile),
    servername: s.servername,
  };
}
