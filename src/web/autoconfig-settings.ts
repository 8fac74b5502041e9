/**
 * What clients are told (autoconfig.ts and its three formats read only this): the submission
 * listeners Postern really has, the mailbox servers the admin announced (web.incoming), the name
 * clients connect to; and the checks that an address or host name is one of our domains.
 */
import type { Config } from "../config/schema.js";
import { mtaStsPolicy } from "./autoconfig-mtasts.js";

export type SocketType = "SSL" | "STARTTLS";

export interface SubmissionEndpoint {
  port: number;
  socketType: SocketType;
}

export interface IncomingEndpoint {
  type: "imap" | "pop3";
  host: string;
  port: number;
  socketType: SocketType;
}

export interface ClientSettings {
  /** The host clients connect to for submission: web.hostname, else hostname. */
  hostname: string;
  /** Our domains, lower case. */
  domains: string[];
  /** Implicit TLS (465) first, then STARTTLS (587), as RFC 8314 §3.3 recommends. */
  submission: SubmissionEndpoint[];
  /** From web.incoming; empty when none is configured. */
  incoming: IncomingEndpoint[];
  /** auth.oauth: OAUTHBEARER/XOAUTH2 are offered too. */
  oauth?: { issuer: string; scope?: string };
  /** web.mtaSts: the policy file served for mta-sts.DOMAIN (the same for each of our domains). */
  mtaStsPolicy?: string;
}

/**
 * The settings clients are given. `listeners` are the bound ones (their real ports: a configured
 * port 0 becomes the kernel's choice); only submission listeners count — port 25 is for MTAs.
 */
export function clientSettingsOf(config: Config, listeners: { mode: string; port: number }[]): ClientSettings {
  const submission: SubmissionEndpoint[] = [];
  const seen = new Set<number>();
  for (const mode of ["submissions", "submission"] as const) {
    for (const l of listeners) {
      if (l.mode !== mode || seen.has(l.port)) continue;
      seen.add(l.port);
      submission.push({ port: l.port, socketType: mode === "submissions" ? "SSL" : "STARTTLS" });
    }
  }
  return {
    hostname: config.web.hostname ?? config.hostname,
    domains: config.domains.map((d) => d.toLowerCase()),
    submission,
    incoming: incomingOf(config.web.incoming),
    oauth: config.auth.oauth ? { issuer: config.auth.oauth.issuer, scope: config.auth.oauth.scope } : undefined,
    mtaStsPolicy: config.web.mtaSts ? mtaStsPolicy([config.hostname], config.web.mtaSts) : undefined,
  };
}

/** IMAPS/POP3S (implicit TLS) ahead of the STARTTLS ports, IMAP ahead of POP3. */
export function incomingOf(incoming: Config["web"]["incoming"]): IncomingEndpoint[] {
  if (!incoming) return [];
  const out: IncomingEndpoint[] = [];
  const order = [
    ["imaps", "imap", "SSL"],
    ["imap", "imap", "STARTTLS"],
    ["pop3s", "pop3", "SSL"],
    ["pop3", "pop3", "STARTTLS"],
  ] as const;
  for (const [key, type, socketType] of order) {
    const hp = incoming[key];
    if (!hp) continue;
    const at = hp.lastIndexOf(":");
    out.push({ type, host: hp.slice(0, at).replace(/^\[|\]$/g, ""), port: Number(hp.slice(at + 1)), socketType });
  }
  return out;
}

/** RFC 5322 dot-atom local part (no quoted strings: no client sends one here). */
const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const DOMAIN = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export interface ClientAddress {
  address: string;
  /** Lower case, one of ours. */
  domain: string;
}

/** A syntactically sane address (one @, RFC 5321 lengths) of one of our domains; otherwise undefined. */
export function ourAddress(raw: string | null | undefined, domains: string[]): ClientAddress | undefined {
  if (!raw || raw.length > 254) return undefined;
  const at = raw.indexOf("@");
  if (at <= 0 || at !== raw.lastIndexOf("@")) return undefined;
  const local = raw.slice(0, at);
  const domain = raw.slice(at + 1).toLowerCase();
  if (local.length > 64 || !LOCAL_PART.test(local) || !DOMAIN.test(domain)) return undefined;
  if (!domains.includes(domain)) return undefined;
  return { address: `${local}@${domain}`, domain };
}

/** The domain of a Host header `autoconfig.DOMAIN[:port]` (or DOMAIN), when it is one of ours. */
export function ourDomainOfHost(host: string | undefined, domains: string[]): string | undefined {
  if (!host) return undefined;
  const name = host
    .replace(/:\d+$/, "")
    .toLowerCase()
    .replace(/^autoconfig\./, "");
  return domains.includes(name) ? name : undefined;
}
