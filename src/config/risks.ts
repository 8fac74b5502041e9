/**
 * What `postern config check` says about a configuration that is valid but dangerous (or wrong in
 * a way the schema cannot see). Each provider looks at the parsed config only — no files, no
 * users; the checks against the machine are in src/cli/config-audit.ts.
 *
 * To add a check: write a `ConfigWarningProvider` (here or in its own file in src/config/, like
 * warnings.ts) and append it to CONFIG_WARNING_PROVIDERS below. A finding at level `error` makes
 * `config check` exit non-zero; a plain string is a warning.
 */
import { isIP } from "node:net";
import type { Config } from "./schema.js";
import { tlsWarnings } from "./warnings.js";

export interface ConfigFinding {
  level: "error" | "warning";
  /** The config key it is about, e.g. "mynetworks.0". */
  key: string;
  message: string;
}

export type ConfigWarningProvider = (config: Config) => (ConfigFinding | string)[];

/** An IP net as a start address and prefix length, on a 128-bit line (IPv4 as ::ffff:a.b.c.d). */
interface Net {
  v4: boolean;
  start: bigint;
  /** Prefix length on the 128-bit line (IPv4 /n is 96 + n). */
  bits: number;
}

function v6ToBigInt(ip: string): bigint {
  let text = ip;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted[1]!.split(".").map(Number) as [number, number, number, number];
    text = text.slice(0, -dotted[1]!.length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? (text.split("::") as [string, string]) : [text, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  return groups.reduce((n, g) => (n << 16n) | BigInt(parseInt(g || "0", 16)), 0n);
}

function parseNet(cidr: string): Net | null {
  const [ip, bitsText] = cidr.split("/") as [string, string | undefined];
  const family = isIP(ip);
  if (family === 0) return null;
  if (family === 4) {
    const value = ip.split(".").reduce((n, o) => (n << 8n) | BigInt(Number(o)), 0n);
    return { v4: true, start: (0xffffn << 32n) | value, bits: 96 + (bitsText === undefined ? 32 : Number(bitsText)) };
  }
  const bits = bitsText === undefined ? 128 : Number(bitsText);
  return { v4: false, start: v6ToBigInt(ip), bits };
}

const mask = (bits: number) => (bits === 0 ? 0n : ((1n << BigInt(bits)) - 1n) << BigInt(128 - bits));

/** Does `outer` contain all of `inner`? */
function contains(outer: Net, inner: Net): boolean {
  return outer.bits <= inner.bits && (outer.start & mask(outer.bits)) === (inner.start & mask(outer.bits));
}

const ALL_IPV4 = parseNet("::ffff:0:0/96")!;
/** Nets with no Internet hosts in them: wide entries there trust only your own machines. */
const PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "fc00::/7", "fe80::/10", "::1/128"].map((c) => parseNet(c)!);

/**
 * How much of the Internet a net holds: "all" (every IPv4 or every address: /0, ::/0,
 * ::ffff:0:0/96), "huge" (public, wider than IPv4 /8 or IPv6 /16), "wide" (public, wider than
 * IPv4 /16 or IPv6 /48), or "ok".
 */
export function netBreadth(cidr: string): "all" | "huge" | "wide" | "ok" {
  const net = parseNet(cidr);
  if (!net) return "ok";
  if (net.bits === 0 || contains(net, ALL_IPV4)) return "all";
  if (PRIVATE.some((p) => contains(p, net))) return "ok";
  const isV4 = contains(ALL_IPV4, net);
  const prefix = isV4 ? net.bits - 96 : net.bits;
  if (prefix < (isV4 ? 8 : 16)) return "huge";
  if (prefix < (isV4 ? 16 : 48)) return "wide";
  return "ok";
}

/** mynetworks relays without AUTH on port 25: an entry covering the Internet is an open relay. */
const mynetworksWarnings: ConfigWarningProvider = (config) =>
  config.mynetworks.flatMap((cidr, i): ConfigFinding[] => {
    const breadth = netBreadth(cidr);
    const key = `mynetworks.${i}`;
    if (breadth === "all" || breadth === "huge") {
      return [
        {
          level: "error",
          key,
          message: `${cidr} makes this server an open relay: every host in it may send anywhere through port 25 without AUTH. List only your own networks (or none: local programs use postern sendmail).`,
        },
      ];
    }
    if (breadth === "wide")
      return [
        { level: "warning", key, message: `${cidr} is a very wide public network: every host in it may relay without AUTH on port 25. Is all of it yours?` },
      ];
    return [];
  });

/** A trusted proxy chooses the client address the server believes, mynetworks included. */
const trustedProxyWarnings: ConfigWarningProvider = (config) => {
  const out: ConfigFinding[] = [];
  const check = (list: readonly string[], prefix: string, used: boolean) =>
    list.forEach((cidr, i) => {
      const breadth = netBreadth(cidr);
      if (breadth === "ok") return;
      const all = breadth === "all" || breadth === "huge";
      out.push({
        level: all && used ? "error" : "warning",
        key: `${prefix}.${i}`,
        message: `${cidr}: any host in it may send a PROXY header and claim any client address (one in mynetworks, or an exempt one). Trust only your load balancers.`,
      });
    });
  const listenersUsingTop = config.listeners.some((l) => l.proxyProtocol && l.trustedProxies === undefined);
  check(config.trustedProxies, "trustedProxies", listenersUsingTop);
  for (const [i, l] of config.listeners.entries()) check(l.trustedProxies ?? [], `listeners.${i}.trustedProxies`, l.proxyProtocol);
  return out;
};

/** limits.exempt skips per-IP limits and the tarpit. */
const exemptWarnings: ConfigWarningProvider = (config) =>
  config.limits.exempt.flatMap((cidr, i): ConfigFinding[] =>
    netBreadth(cidr) === "ok"
      ? []
      : [{ level: "warning", key: `limits.exempt.${i}`, message: `${cidr}: per-IP connection limits and the tarpit are off for all of this network.` }],
  );

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/** AUTH before TLS: passwords cross the network in clear. */
const cleartextAuthWarnings: ConfigWarningProvider = (config) =>
  config.listeners.flatMap((l, i): ConfigFinding[] =>
    l.authWithoutTls && !LOOPBACK.has(l.address) && !l.address.startsWith("127.")
      ? [
          {
            level: "warning",
            key: `listeners.${i}.authWithoutTls`,
            message: `AUTH before TLS on ${l.address}:${l.port}: passwords cross the network in clear (meant for test rigs on loopback only).`,
          },
        ]
      : [],
  );

/**
 * Every provider `postern config check` runs, in order. Append new ones here (e.g. the TLS
 * verification warnings for relay.smarthost and the transport table).
 */
export const CONFIG_WARNING_PROVIDERS: ConfigWarningProvider[] = [mynetworksWarnings, trustedProxyWarnings, exemptWarnings, cleartextAuthWarnings, tlsWarnings];

export function configWarnings(config: Config, providers: readonly ConfigWarningProvider[] = CONFIG_WARNING_PROVIDERS): ConfigFinding[] {
  return providers.flatMap((p) => p(config).map((f) => (typeof f === "string" ? { level: "warning" as const, key: "", message: f } : f)));
}
