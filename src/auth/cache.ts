/**
 * Verified-credentials cache, like Dovecot's auth_cache: after one successful scrypt check, the
 * same user+password is accepted for `ttlMs` without hashing again. Only successes are cached.
 *
 * Keys are HMAC-SHA-256(per-process random key, user NUL password): the cache never holds a
 * password, and the keys are useless outside this process. Each entry also carries a `stamp`
 * (the caller passes the stored password hash) so a password changed by another process (the
 * `postern user passwd` CLI) stops matching at once, without waiting for the TTL. App passwords
 * use the same rule with their own row's hash as the stamp: a revoked one has no row, so nothing
 * to match.
 */
import { createHmac, randomBytes } from "node:crypto";

export interface CredentialCacheOptions {
  /** Default 60 s. */
  ttlMs?: number;
  /** Least recently used entries are dropped beyond this; default 10,000. */
  maxEntries?: number;
  /** Injectable clock for tests. */
  now?: () => number;
}

interface CacheEntry {
  user: string;
  stamp: string;
  expires: number;
}

export class CredentialCache {
  private readonly key = randomBytes(32);
  private readonly entries = new Map<string, CacheEntry>(); // insertion order = LRU order
  private readonly keysByUser = new Map<string, Set<string>>();
  /** Verifications in progress, by keyed hash: joined instead of repeated. */
  private readonly inflight = new Map<string, Promise<boolean>>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  hits = 0;
  misses = 0;

  constructor(options: CredentialCacheOptions = {}) {
    this.ttlMs = options.ttlMs ?? 60_000;
    this.maxEntries = options.maxEntries ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /** True when this user+password was verified within the TTL against the same `stamp`. */
  has(user: string, password: string, stamp: string): boolean {
    const cacheKey = this.keyFor(user, password);
    const entry = this.entries.get(cacheKey);
    if (!entry || entry.expires <= this.now() || entry.stamp !== stamp || entry.user !== user) {
      if (entry) this.remove(cacheKey, entry.user);
      this.misses++;
      return false;
    }
    this.entries.delete(cacheKey); // move to the most-recently-used end
    this.entries.set(cacheKey, entry);
    this.hits++;
    return true;
  }

  put(user: string, password: string, stamp: string): void {
    if (this.ttlMs <= 0 || this.maxEntries <= 0) return;
    const cacheKey = this.keyFor(user, password);
    this.remove(cacheKey, this.entries.get(cacheKey)?.user);
    this.entries.set(cacheKey, { user, stamp, expires: this.now() + this.ttlMs });
    let keys = this.keysByUser.get(user);
    if (!keys) this.keysByUser.set(user, (keys = new Set()));
    keys.add(cacheKey);
    while (this.entries.size > this.maxEntries) {
      const [oldestKey, oldest] = this.entries.entries().next().value as [string, CacheEntry];
      this.remove(oldestKey, oldest.user);
    }
  }

  /**
   * Runs `verify` once for concurrent checks of the same user+password+stamp: a client that opens
   * ten sessions at once (or ten clients of one account) costs one memory-hard hash, not ten.
   */
  verifyShared(user: string, password: string, stamp: string, verify: () => Promise<boolean>): Promise<boolean> {
    const key = `${this.keyFor(user, password)}\0${stamp}`;
    let running = this.inflight.get(key);
    if (!running) {
      running = verify().finally(() => this.inflight.delete(key));
      this.inflight.set(key, running);
    }
    return running;
  }

  /** Forget every cached login of `user` (password changed, user disabled or deleted). */
  invalidateUser(user: string): void {
    for (const cacheKey of this.keysByUser.get(user) ?? []) this.entries.delete(cacheKey);
    this.keysByUser.delete(user);
  }

  clear(): void {
    this.entries.clear();
    this.keysByUser.clear();
  }

  private keyFor(user: string, password: string): string {
    return createHmac("sha256", this.key).update(`${user}\0${password}`, "utf8").digest("base64");
  }

  private remove(cacheKey: string, user: string | undefined): void {
    this.entries.delete(cacheKey);
    if (user === undefined) return;
    const keys = this.keysByUser.get(user);
    keys?.delete(cacheKey);
    if (keys?.size === 0) this.keysByUser.delete(user);
  }
}
