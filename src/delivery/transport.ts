/**
 * The transport table (like Postfix's transport_maps + relayhost): which way mail for a domain
 * leaves. Keys are a domain ("example.org"), its subdomains (".example.org") or the default ("*").
 * Values:
 *   mx                          MX lookup (RFC 5321 §5.1)
 *   smarthost [host:port]       the relay; without host:port the configured relay.smarthost
 *   lmtp unix:/path | host:port LMTP (RFC 2033), e.g. Dovecot
 *   maildir                     local Maildir
 *   discard                     accept and drop
 *   reject                      refuse permanently
 * mx and smarthost take options: tls=none|may|must (STARTTLS; "must" defers rather than send in
 * clear) and verify=yes|no (certificate check when TLS is used).
 */
import { normaliseDomain } from "../base/domain.js";

export type TlsRequirement = "none" | "may" | "must";

export type Transport =
  | { kind: "mx"; tls?: TlsRequirement; verify?: boolean }
  | { kind: "smarthost"; host?: string; port?: number; tls?: TlsRequirement; verify?: boolean }
  | { kind: "lmtp"; path?: string; host?: string; port?: number }
  | { kind: "maildir" }
  | { kind: "discard" }
  | { kind: "reject" };

/** Parses one table value; throws an Error whose message says what is wrong. */
export function parseTransport(spec: string): Transport {
  const words = spec.trim().split(/\s+/);
  const kind = words.shift()?.toLowerCase();
  const options = new Map<string, string>();
  const positional: string[] = [];
  for (const w of words) {
    const eq = w.indexOf("=");
    if (eq > 0) options.set(w.slice(0, eq).toLowerCase(), w.slice(eq + 1).toLowerCase());
    else positional.push(w);
  }
  const tlsOptions = (): { tls?: TlsRequirement; verify?: boolean } => {
    const out: { tls?: TlsRequirement; verify?: boolean } = {};
    const tls = options.get("tls");
    if (tls !== undefined) {
      if (tls !== "none" && tls !== "may" && tls !== "must") throw new Error(`tls=${tls}: expected none, may or must`);
      out.tls = tls;
    }
    const verify = options.get("verify");
    if (verify !== undefined) {
      if (verify !== "yes" && verify !== "no") throw new Error(`verify=${verify}: expected yes or no`);
      out.verify = verify === "yes";
    }
    for (const k of options.keys()) if (k !== "tls" && k !== "verify") throw new Error(`unknown option ${k}`);
    return out;
  };
  const noArgs = () => {
    if (positional.length > 0 || options.size > 0) throw new Error(`"${kind}" takes no arguments`);
  };
  switch (kind) {
    case "mx":
      if (positional.length > 0) throw new Error(`"mx" takes only tls= and verify=`);
      return { kind: "mx", ...tlsOptions() };
    case "smarthost": {
      if (positional.length > 1) throw new Error(`"smarthost" takes one host:port`);
      const hp = positional[0] === undefined ? undefined : parseHostPort(positional[0]);
      return { kind: "smarthost", ...hp, ...tlsOptions() };
    }
    case "lmtp": {
      if (positional.length !== 1 || options.size > 0) throw new Error(`"lmtp" takes unix:/path or host:port`);
      const target = positional[0]!;
      if (target.startsWith("unix:")) {
        const path = target.slice(5);
        if (!path.startsWith("/")) throw new Error("lmtp unix: needs an absolute path");
        return { kind: "lmtp", path };
      }
      return { kind: "lmtp", ...parseHostPort(target) };
    }
    case "maildir":
    case "discard":
    case "reject":
      noArgs();
      return { kind };
    default:
      throw new Error(`unknown transport "${kind ?? ""}" (expected mx, smarthost, lmtp, maildir, discard or reject)`);
  }
}

function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new Error(`"${text}" must be host:port`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port: Number(m[2]) };
}

export interface TransportTableOptions {
  /** The configured entries, values already parsed. */
  entries: Record<string, Transport>;
  isLocalDomain(domain: string): boolean;
  /** relay.smarthost configured: the default for remote domains (Postfix relayhost). */
  hasSmarthost: boolean;
}

export class TransportTable {
  private readonly entries = new Map<string, Transport>();

  constructor(private readonly opts: TransportTableOptions) {
    for (const [k, v] of Object.entries(opts.entries)) this.entries.set(normaliseDomain(k), v);
  }

  /** Parses every value; the error names the key whose value is wrong. */
  static parseEntries(raw: Record<string, string>): Record<string, Transport> {
    const out: Record<string, Transport> = {};
    for (const [k, v] of Object.entries(raw)) {
      try {
        out[k] = parseTransport(v);
      } catch (err) {
        throw new Error(`transport "${k}": ${(err as Error).message}`);
      }
    }
    return out;
  }

  /** Exact domain, then ".parent" entries from the nearest up, then local/default rules. */
  lookup(domainIn: string): Transport {
    const domain = normaliseDomain(domainIn);
    const exact = this.entries.get(domain);
    if (exact) return exact;
    const labels = domain.split(".");
    for (let i = 1; i < labels.length; i++) {
      const parent = this.entries.get("." + labels.slice(i).join("."));
      if (parent) return parent;
    }
    if (this.opts.isLocalDomain(domain)) return { kind: "maildir" };
    const fallback = this.entries.get("*");
    if (fallback) return fallback;
    return this.opts.hasSmarthost ? { kind: "smarthost" } : { kind: "mx" };
  }
}

/** A stable key: recipients with equal keys travel together in one session. */
export function transportKey(t: Transport, domain: string): string {
  switch (t.kind) {
    case "mx":
      return `mx:${domain}:${t.tls ?? ""}:${t.verify ?? ""}`;
    case "smarthost":
      return `smarthost:${t.host ?? "*"}:${t.port ?? ""}:${t.tls ?? ""}:${t.verify ?? ""}`;
    case "lmtp":
      return `lmtp:${t.path ?? `${t.host}:${t.port}`}`;
    default:
      return t.kind;
  }
}
