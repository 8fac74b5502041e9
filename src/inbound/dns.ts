/**
 * DNS for the inbound checks (SPF, DKIM keys, DMARC records), through the configured resolvers
 * (dns.servers, dns.timeoutMs), with two bounds mailauth does not give:
 *  - a budget per message: at most `maxLookups` queries and `budgetMs` of wall time for all its
 *    checks together (RFC 7208 §4.6.4 limits one SPF evaluation to 10 DNS-querying terms and 2
 *    void lookups, which mailauth enforces; a message may carry many DKIM signatures, and SPF runs
 *    for MAIL FROM and HELO). Past either bound a query fails as ETIMEOUT: a temperror, never a pass.
 *  - a cache shared by every connection. Node's resolver gives TTLs only for A and AAAA
 *    (`{ ttl: true }`); those are kept for their TTL, capped by `cacheMaxSec`. TXT, MX and PTR
 *    answers come without one (resolveAny would give none for TXT either, and ANY is refused by
 *    many servers, RFC 8482), so they are kept for `cacheMaxSec`, a small fixed time. "No such
 *    name" and "no data" are cached the same way; failures (timeouts, SERVFAIL) are not.
 */
import { promises as dns } from "node:dns";

/** What mailauth calls: dns.promises.resolve's shape. */
export type DnsResolve = (name: string, type: string) => Promise<unknown>;

export interface InboundDnsOptions {
  /** dns.servers: "host" or "host:port"; empty: the system's resolvers. */
  servers: readonly string[];
  /** dns.timeoutMs: per query attempt. */
  timeoutMs: number;
  /** Longest time an answer is reused (A/AAAA: their TTL, at most this). 0: no cache. */
  cacheMaxSec: number;
  /** Most answers kept; the oldest go first. */
  maxEntries?: number;
  /** For tests: the clock. */
  now?: () => number;
}

export interface LookupBudget {
  /** Queries one message may make, cached answers excluded. */
  maxLookups: number;
  /** Wall time for all of one message's queries together. */
  budgetMs: number;
}

type Cached = { expires: number; value?: unknown; error?: { code: string; message: string } };

/** Answers that mean "nothing there" (cacheable) rather than "could not ask". */
const ABSENT = new Set(["ENODATA", "ENOTFOUND"]);

function dnsError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

export class InboundDns {
  private readonly resolver: dns.Resolver;
  private readonly cache = new Map<string, Cached>();
  private readonly maxEntries: number;
  private readonly now: () => number;
  /** Queries sent to a server (cache misses), for tests and metrics. */
  queries = 0;

  constructor(private readonly opts: InboundDnsOptions) {
    this.resolver = new dns.Resolver({ timeout: opts.timeoutMs, tries: 2 });
    if (opts.servers.length > 0) this.resolver.setServers([...opts.servers]);
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  /** A resolver for one message's checks, bounded by `budget`. */
  forMessage(budget: LookupBudget): DnsResolve & { used(): number } {
    const deadline = this.now() + budget.budgetMs;
    let used = 0;
    const resolve = async (name: string, type: string): Promise<unknown> => {
      const key = `${type.toUpperCase()} ${name.toLowerCase().replace(/\.$/, "")}`;
      const hit = this.cached(key);
      if (hit) return answer(hit);
      const left = deadline - this.now();
      if (++used > budget.maxLookups) throw dnsError("ETIMEOUT", `DNS budget spent: more than ${budget.maxLookups} lookups for one message`);
      if (left <= 0) throw dnsError("ETIMEOUT", `DNS budget spent: over ${budget.budgetMs} ms for one message`);
      this.queries++;
      let timer: NodeJS.Timeout | undefined;
      const overtime = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(dnsError("ETIMEOUT", `DNS budget spent: over ${budget.budgetMs} ms for one message`)), left);
        timer.unref();
      });
      try {
        const entry = await Promise.race([this.lookup(key, name, type.toUpperCase()), overtime]);
        return answer(entry);
      } finally {
        clearTimeout(timer);
      }
    };
    return Object.assign(resolve, { used: () => used });
  }

  private cached(key: string): Cached | undefined {
    const entry = this.cache.get(key);
    if (!entry) return undefined;
    if (entry.expires > this.now()) return entry;
    this.cache.delete(key);
    return undefined;
  }

  private async lookup(key: string, name: string, type: string): Promise<Cached> {
    const max = this.opts.cacheMaxSec * 1000;
    let entry: Cached;
    try {
      if (type === "A" || type === "AAAA") {
        const records = type === "A" ? await this.resolver.resolve4(name, { ttl: true }) : await this.resolver.resolve6(name, { ttl: true });
        const ttl = Math.min(...records.map((r) => r.ttl), Number.MAX_SAFE_INTEGER);
        entry = { value: records.map((r) => r.address), expires: this.now() + Math.min(ttl * 1000, max) };
      } else {
        entry = { value: await this.resolver.resolve(name, type), expires: this.now() + max };
      }
    } catch (err) {
      const code = (err as { code?: string }).code ?? "EUNKNOWN";
      const failure = { code, message: err instanceof Error ? err.message : String(err) };
      if (!ABSENT.has(code)) return { error: failure, expires: 0 };
      entry = { error: failure, expires: this.now() + max };
    }
    if (max > 0) {
      if (this.cache.size >= this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(key, entry);
    }
    return entry;
  }
}

function answer(entry: Cached): unknown {
  if (entry.error) throw dnsError(entry.error.code, entry.error.message);
  return entry.value;
}
