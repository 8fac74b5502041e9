/**
 * Where mail for a domain goes, per RFC 5321 §5.1: MX records by preference (random order among
 * equal preferences), the domain's own A/AAAA when it has no MX ("implicit MX"), the null MX of
 * RFC 7505 as an immediate permanent failure, and our own name or address in the list as a loop.
 * The resolver's servers are configurable (dns.servers) so tests can run their own DNS.
 */
import { promises as dns } from "node:dns";

export interface MxHost {
  name: string;
  preference: number;
  addresses: string[];
}

export type MxResolution = { ok: true; hosts: MxHost[]; implicit: boolean } | { ok: false; outcome: "failed" | "deferred"; detail: string };

export interface MxResolverOptions {
  /** "host" or "host:port" (IPv6 as "[addr]:port"); empty: the system's resolvers. */
  servers?: string[];
  timeoutMs?: number;
  /** Names that are us (our hostname): an MX pointing at one of them is a loop. */
  ownNames: string[];
  /** Addresses that are us (public addresses of this host). */
  ownAddresses: string[];
  /** For tests of the shuffle; Math.random by default. */
  random?: () => number;
}

/** DNS answers that mean "nothing there" rather than "could not ask". */
const NO_DATA = new Set(["ENODATA", "ENOTFOUND"]);

function codeOf(err: unknown): string {
  return (err as { code?: string }).code ?? String(err);
}

export class MxResolver {
  private readonly resolver: dns.Resolver;
  private readonly ownNames: Set<string>;
  private readonly ownAddresses: Set<string>;
  private readonly random: () => number;

  constructor(opts: MxResolverOptions) {
    this.resolver = new dns.Resolver({ timeout: opts.timeoutMs ?? 5000, tries: 2 });
    if (opts.servers && opts.servers.length > 0) this.resolver.setServers(opts.servers);
    this.ownNames = new Set(opts.ownNames.map(normalise));
    this.ownAddresses = new Set(opts.ownAddresses);
    this.random = opts.random ?? Math.random;
  }

  async resolve(domainIn: string): Promise<MxResolution> {
    const domain = normalise(domainIn);
    let records: { exchange: string; priority: number }[];
    try {
      records = await this.resolver.resolveMx(domain);
    } catch (err) {
      const code = codeOf(err);
      if (code === "ENOTFOUND") return { ok: false, outcome: "failed", detail: `550 5.1.2 domain ${domain} does not exist (DNS NXDOMAIN)` };
      if (code !== "ENODATA") return { ok: false, outcome: "deferred", detail: `451 4.4.3 DNS lookup of MX for ${domain} failed: ${code}` };
      records = [];
    }
    // RFC 7505 §3: a single MX with the root as exchange means "accepts no mail".
    if (records.length === 1 && (records[0]!.exchange === "" || records[0]!.exchange === ".")) {
      return { ok: false, outcome: "failed", detail: `556 5.1.10 domain ${domain} accepts no mail (null MX, RFC 7505)` };
    }
    const implicit = records.length === 0;
    // RFC 5321 §5.1: without MX records the domain itself is the only host, preference 0.
    const candidates = implicit ? [{ exchange: domain, priority: 0 }] : records.filter((r) => r.exchange !== "" && r.exchange !== ".");
    const ordered = this.order(candidates);

    const hosts: MxHost[] = [];
    let temporary: string | undefined;
    for (const c of ordered) {
      const name = normalise(c.exchange);
      const looked = await this.addresses(name);
      if ("error" in looked) {
        temporary ??= `451 4.4.3 DNS lookup of ${name} failed: ${looked.error}`;
        continue;
      }
      // RFC 5321 §5.1: finding ourselves, discard this and every host of equal or lower preference.
      if (this.ownNames.has(name) || looked.addresses.some((a) => this.ownAddresses.has(a))) {
        if (hosts.length === 0) {
          return { ok: false, outcome: "failed", detail: `554 5.4.6 mail for ${domain} loops back to myself (MX ${name})` };
        }
        break;
      }
      if (looked.addresses.length > 0) hosts.push({ name, preference: c.priority, addresses: looked.addresses });
    }
    if (hosts.length > 0) return { ok: true, hosts, implicit };
    if (temporary) return { ok: false, outcome: "deferred", detail: temporary };
    return implicit
      ? { ok: false, outcome: "failed", detail: `550 5.1.2 domain ${domain} has no MX and no address records` }
      : { ok: false, outcome: "failed", detail: `550 5.4.4 no address records for the MX hosts of ${domain}` };
  }

  /** Sorted by preference; equal preferences shuffled (RFC 5321 §5.1 spreads the load). */
  private order(records: { exchange: string; priority: number }[]): { exchange: string; priority: number }[] {
    const keyed = records.map((r) => ({ r, k: this.random() }));
    keyed.sort((a, b) => a.r.priority - b.r.priority || a.k - b.k);
    return keyed.map((x) => x.r);
  }

  private async addresses(name: string): Promise<{ addresses: string[] } | { error: string }> {
    const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(name), this.resolver.resolve6(name)]);
    const out: string[] = [];
    const errors: string[] = [];
    for (const r of [v4, v6]) {
      if (r.status === "fulfilled") out.push(...r.value);
      else if (!NO_DATA.has(codeOf(r.reason))) errors.push(codeOf(r.reason));
    }
    // One family failing temporarily while the other answered is fine: use what we have.
    if (out.length === 0 && errors.length > 0) return { error: errors[0]! };
    return { addresses: out };
  }
}

function normalise(name: string): string {
  const d = name.toLowerCase();
  return d.endsWith(".") ? d.slice(0, -1) : d;
}
