/**
 * DNS for `postern check --dns`: one resolver bound to the configured servers (dns.servers, or
 * --dns-server), never the system's when servers are given, so tests and split-horizon setups see
 * the zone the check is about.
 */
import { promises as dns } from "node:dns";

export type Resolver = dns.Resolver;

export function checkResolver(servers: string[], timeoutMs: number): Resolver {
  const resolver = new dns.Resolver({ timeout: timeoutMs, tries: 2 });
  if (servers.length > 0) resolver.setServers(servers);
  return resolver;
}

/** No such name (NXDOMAIN) or no record of that type: an answer, not a failure of DNS. */
export const isNoRecord = (err: unknown): boolean => {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENODATA" || code === "ENOTFOUND";
};

/** The TXT records at `name`, each one's character-strings joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2). */
export async function txtRecords(resolver: Resolver, name: string): Promise<string[]> {
  try {
    return (await resolver.resolveTxt(name)).map((chunks) => chunks.join(""));
  } catch (err) {
    if (isNoRecord(err)) return [];
    throw err;
  }
}

/** A and AAAA together; [] when the name has neither. */
export async function addressesOf(resolver: Resolver, name: string): Promise<string[]> {
  const [v4, v6] = await Promise.allSettled([resolver.resolve4(name), resolver.resolve6(name)]);
  for (const r of [v4, v6]) if (r.status === "rejected" && !isNoRecord(r.reason)) throw r.reason;
  return [...(v4.status === "fulfilled" ? v4.value : []), ...(v6.status === "fulfilled" ? v6.value : [])];
}

/** mailauth's resolver signature, answered by this resolver (so its SPF walk uses the same servers). */
export function mailauthResolver(resolver: Resolver): (name: string, rrtype: string) => Promise<string[][] | string[]> {
  return (name, rrtype) => resolver.resolve(name, rrtype as "TXT") as Promise<string[][] | string[]>;
}

export const dnsError = (err: unknown): string => {
  const e = err as NodeJS.ErrnoException & { hostname?: string };
  return e.code ? `${e.code}${e.hostname ? ` for ${e.hostname}` : ""}` : String((err as Error).message ?? err);
};
