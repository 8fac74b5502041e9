/**
 * MTA-STS (RFC 8461): the policy that applies to a recipient domain now. The `_mta-sts` TXT id is
 * looked up on every use (cheap, and how a new policy is noticed, §3.1); the policy is fetched
 * over HTTPS (mta-sts-fetch.ts) only when nothing unexpired is cached or the id changed, and kept
 * in memory and on disk (mta-sts-cache.ts) for its max_age (§5.1, §10.2). A policy in use past
 * half its max_age is refreshed in the background (§10.2); a failed fetch is not retried for the
 * same id within five minutes (§3.3).
 *
 * What the caller gets (MtaStsResult):
 * - `policy` with mode enforce/testing: apply it (§5.1, §5.2, checked by the delivery path);
 * - `policy` with mode none: a fetched "none" policy replaces (so drops) any cached one (§5 and
 *   §8.3: the way a domain withdraws MTA-STS); the caller treats it as no MTA-STS. It is returned,
 *   not hidden, so logs and TLS-RPT can say that the domain published "none";
 * - `none`: no TXT record (or an unusable one) and nothing cached;
 * - `fetch-failed`: a TXT record but no policy and nothing cached: deliver as without MTA-STS and
 *   report the result type (§5, RFC 8460 §4.3).
 */
import { promises as dns } from "node:dns";
import { readFileSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { normaliseDomain } from "../../base/domain.js";
import { MtaStsDiskCache } from "./mta-sts-cache.js";
import { fetchMtaStsPolicy, type MtaStsFetchResult } from "./mta-sts-fetch.js";
import { type MtaStsTxt, parseMtaStsTxt } from "./mta-sts-parse.js";
import type { MtaStsPolicy, MtaStsResult, MtaStsSource } from "./types.js";

export { MtaStsDiskCache } from "./mta-sts-cache.js";
export { fetchMtaStsPolicy, type MtaStsFetchResult, mtaStsHost } from "./mta-sts-fetch.js";
export { MTA_STS_MAX_AGE_LIMIT, mxMatches, parseMtaStsPolicy, parseMtaStsTxt } from "./mta-sts-parse.js";

export interface MtaStsResolverOptions {
  /** Where policies are cached across restarts (created when first needed). */
  cacheDir: string;
  /** DNS servers ("host" or "host:port"), as dns.servers; empty: the system's. */
  dnsServers?: string[];
  dnsTimeoutMs?: number;
  /** Port of mta-sts.DOMAIN: 443 except in test rigs. */
  httpsPort?: number;
  fetchTimeoutMs?: number;
  /** PEM CA bundle for the policy hosts; absent: the system's roots. */
  ca?: string | Buffer;
  /** The clock (ms since the epoch); tests move it to expire policies. */
  now?: () => number;
}

/** The TXT lookup's answer, or why there was none. */
type TxtLookup = MtaStsTxt | { kind: "dns-error"; reason: string };

const NO_DATA = new Set(["ENODATA", "ENOTFOUND"]);

/** RFC 8461 §3.3: wait at least five minutes per policy id after a failed fetch. */
export const FETCH_RETRY_MS = 5 * 60_000;

/** Whether a policy is still within its max_age at `now`. */
export const mtaStsPolicyFresh = (p: MtaStsPolicy, now: number): boolean => now < p.fetchedAt + p.maxAge * 1000;

export class MtaStsResolver implements MtaStsSource {
  private readonly resolver: dns.Resolver;
  private readonly disk: MtaStsDiskCache;
  private readonly now: () => number;
  /** Cached policies by domain; null: the disk has none (not read again while the domain has a TXT record). */
  private readonly memory = new Map<string, MtaStsPolicy | null>();
  /** One resolution per domain at a time: concurrent callers share it (and its fetch). */
  private readonly inFlight = new Map<string, Promise<MtaStsResult>>();
  /** The last failed fetch per domain (§3.3 retry limit). */
  private readonly failures = new Map<string, { id: string; at: number; result: Extract<MtaStsFetchResult, { ok: false }> }>();
  /** Background refreshes (§10.2), so shutdown and tests can wait for them. */
  private readonly refreshes = new Map<string, Promise<void>>();

  constructor(private readonly o: MtaStsResolverOptions) {
    this.resolver = new dns.Resolver({ timeout: o.dnsTimeoutMs ?? 5000, tries: 2 });
    if (o.dnsServers && o.dnsServers.length > 0) this.resolver.setServers(o.dnsServers);
    this.disk = new MtaStsDiskCache(o.cacheDir);
    this.now = o.now ?? Date.now;
  }

  /** The policy for a recipient domain now (see the module comment for the cases). Never throws. */
  policyFor(domainIn: string): Promise<MtaStsResult> {
    const domain = normaliseDomain(domainIn);
    const running = this.inFlight.get(domain);
    if (running) return running;
    const p = this.resolve(domain).finally(() => this.inFlight.delete(domain));
    this.inFlight.set(domain, p);
    return p;
  }

  /** Resolves once no background refresh is running. */
  async idle(): Promise<void> {
    while (this.refreshes.size > 0) await Promise.all(this.refreshes.values());
  }

  private async resolve(domain: string): Promise<MtaStsResult> {
    const [cached, txt] = await Promise.all([this.cached(domain), this.lookupTxt(domain)]);
    const fresh = cached && mtaStsPolicyFresh(cached, this.now()) ? cached : undefined;
    // §5.1: a TXT record that disappears (or breaks, or DNS that fails) does not end a policy;
    // only its expiry or a fetched replacement does.
    if (txt.kind !== "record") {
      if (fresh) return { kind: "policy", policy: fresh, fromCache: true };
      // Nothing to keep: an expired policy is removed, and domains without MTA-STS are not
      // remembered (memory stays bounded by the domains that have a policy).
      this.memory.delete(domain);
      this.failures.delete(domain);
      if (cached) await this.disk.remove(domain).catch(() => undefined);
      return { kind: "none" };
    }
    if (fresh && fresh.id === txt.id) {
      // §10.2: refresh a policy in use well before it expires, so it need not lapse.
      if (this.now() - fresh.fetchedAt > (fresh.maxAge * 1000) / 2) this.refreshInBackground(domain, txt.id);
      return { kind: "policy", policy: fresh, fromCache: true };
    }
    const fetched = await this.fetchThrottled(domain, txt.id);
    if (fetched.ok) return { kind: "policy", policy: fetched.policy, fromCache: false };
    // §5.1: a failed fetch keeps the unexpired cached policy.
    if (fresh) return { kind: "policy", policy: fresh, fromCache: true };
    return { kind: "fetch-failed", resultType: fetched.resultType, detail: fetched.detail };
  }

  /**
   * §3.3: after a failed fetch, further attempts for the same policy id wait five minutes, so
   * a struggling policy host is not hit by every delivery (which would each wait for it too).
   */
  private async fetchThrottled(domain: string, id: string): ReturnType<MtaStsResolver["fetchAndStore"]> {
    const failed = this.failures.get(domain);
    if (failed && failed.id === id && this.now() - failed.at < FETCH_RETRY_MS) return failed.result;
    const r = await this.fetchAndStore(domain, id);
    if (r.ok) this.failures.delete(domain);
    else this.failures.set(domain, { id, at: this.now(), result: r });
    return r;
  }

  private refreshInBackground(domain: string, id: string): void {
    if (this.refreshes.has(domain)) return;
    const p = this.fetchThrottled(domain, id).then(
      () => undefined,
      () => undefined,
    );
    this.refreshes.set(domain, p);
    void p.finally(() => this.refreshes.delete(domain));
  }

  /** Fetches the policy; a good one replaces the cached one (a "none" policy too: §8.3). */
  private async fetchAndStore(domain: string, id: string): Promise<{ ok: true; policy: MtaStsPolicy } | Extract<MtaStsFetchResult, { ok: false }>> {
    const r = await fetchMtaStsPolicy(domain, {
      resolver: this.resolver,
      ...(this.o.httpsPort !== undefined ? { port: this.o.httpsPort } : {}),
      ...(this.o.ca !== undefined ? { ca: this.o.ca } : {}),
      ...(this.o.fetchTimeoutMs !== undefined ? { timeoutMs: this.o.fetchTimeoutMs } : {}),
    });
    if (!r.ok) return r;
    const policy: MtaStsPolicy = { ...r.policy, id, fetchedAt: this.now(), text: r.text };
    this.memory.set(domain, policy);
    // A disk that cannot be written costs the cache across restarts, not this delivery.
    await this.disk.write(domain, policy).catch(() => undefined);
    return { ok: true, policy };
  }

  private async cached(domain: string): Promise<MtaStsPolicy | undefined> {
    let p = this.memory.get(domain);
    if (p === undefined) {
      p = (await this.disk.read(domain)) ?? null;
      // A fetch may have finished while the file was read; the newer policy wins.
      if (!this.memory.has(domain)) this.memory.set(domain, p);
      else p = this.memory.get(domain)!;
    }
    return p ?? undefined;
  }

  private async lookupTxt(domain: string): Promise<TxtLookup> {
    try {
      const records = (await this.resolver.resolveTxt(`_mta-sts.${domain}`)).map((chunks) => chunks.join(""));
      return parseMtaStsTxt(records);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      return NO_DATA.has(code) ? { kind: "none" } : { kind: "dns-error", reason: code };
    }
  }
}

/** outbound.mtaSts.cacheDir, relative paths inside dataDir; default <dataDir>/mta-sts. */
export function mtaStsCacheDir(config: MtaStsConfig): string {
  const dir = config.outbound.mtaSts.cacheDir;
  if (dir === undefined) return join(config.dataDir, "mta-sts");
  return isAbsolute(dir) ? dir : join(config.dataDir, dir);
}

/** The configuration's view of MTA-STS (a subset of Config, so tests can pass just this). */
export interface MtaStsConfig {
  dataDir: string;
  dns: { servers: string[]; timeoutMs: number };
  outbound: {
    caFile?: string | undefined;
    mtaSts: { enabled: boolean; cacheDir?: string | undefined; httpsPort: number; fetchTimeoutMs: number; caFile?: string | undefined };
  };
}

/**
 * The resolver the configuration asks for, or undefined when outbound.mtaSts.enabled is false.
 * The CA bundle: outbound.mtaSts.caFile, else outbound.caFile, else the system's (read now, so a
 * missing file fails at start-up, not at the first delivery).
 */
export function createMtaStsResolver(config: MtaStsConfig, now?: () => number): MtaStsResolver | undefined {
  const m = config.outbound.mtaSts;
  if (!m.enabled) return undefined;
  const caFile = m.caFile ?? config.outbound.caFile;
  return new MtaStsResolver({
    cacheDir: mtaStsCacheDir(config),
    dnsServers: config.dns.servers,
    dnsTimeoutMs: config.dns.timeoutMs,
    httpsPort: m.httpsPort,
    fetchTimeoutMs: m.fetchTimeoutMs,
    ...(caFile ? { ca: readFileSync(caFile) } : {}),
    ...(now ? { now } : {}),
  });
}
