/**
 * Password-guessing defence across connections (Postfix anvil, Dovecot auth penalty, fail2ban's
 * job done in-process): failed AUTHs are counted per client IP and per account *from one network
 * block* over a sliding window.
 * - past `ipFailures`, AUTH from that IP is refused (454 4.7.0) for `lockoutSec`;
 * - past `accountFailures`, that account is refused from that block only: an attacker elsewhere
 *   can never lock the real user out everywhere;
 * - each further failure from an IP costs a growing penalty delay (to `maxPenaltyMs`, ~15 s).
 * Exempt networks skip all of this (never the per-failure delay or the per-connection cap, which
 * the SMTP layer applies). No I/O; the clock is injected.
 *
 * "Per IP" means per client as `clientKey` names it: an IPv4 address, or an IPv6 /64 — one
 * subscriber's usual allocation (RFC 6177), inside which a client picks any address it likes.
 */
import { isIP } from "node:net";
import { NetworkList, unmapIPv4 } from "./networks.js";

export interface AuthThrottleConfig {
  windowSec: number;
  ipFailures: number;
  accountFailures: number;
  lockoutSec: number;
  /** Penalty after the 2nd failure in the window; doubles with each further one. 0 = off. */
  penaltyBaseMs: number;
  maxPenaltyMs: number;
  /** Network block an account limit applies to: /24 for IPv4, /64 for IPv6 by default. */
  ipv4Prefix: number;
  ipv6Prefix: number;
}

export const DEFAULT_AUTH_THROTTLE: AuthThrottleConfig = {
  windowSec: 600,
  ipFailures: 10,
  accountFailures: 5,
  lockoutSec: 900,
  penaltyBaseMs: 1000,
  maxPenaltyMs: 15_000,
  ipv4Prefix: 24,
  ipv6Prefix: 64,
};

/** Keys kept at most: a flood of addresses cannot grow memory without bound. */
const MAX_KEYS = 100_000;

export type ThrottleVerdict = { refused: false } | { refused: true; scope: "ip" | "account"; retryAfterSec: number };

/** A lockout in force, for the web dashboard: a client (IP or /64) or an account from a block. */
export interface Lockout {
  scope: "ip" | "account";
  client: string;
  account?: string;
  retryAfterSec: number;
}

type Awaitable<T> = T | Promise<T>;

/**
 * The throttle as its users see it: this in-memory one (one node, answers at once) or the
 * cluster-wide one on PostgreSQL (src/store/pg/counters.ts, answers with a promise), so callers await.
 */
export interface AuthThrottlePort {
  isExempt(ip: string): boolean;
  checkIp(ip: string): Awaitable<ThrottleVerdict>;
  checkAccount(ip: string, user: string): Awaitable<ThrottleVerdict>;
  failed(ip: string, user?: string): Awaitable<{ penaltyMs: number; locked: ("ip" | "account")[] }>;
  succeeded(ip: string, user: string): Awaitable<void>;
  lockedOut(): Awaitable<Lockout[]>;
}

/** The counter key of a client's failures. */
export function ipCounterKey(ip: string): string {
  return `ip ${clientKey(ip)}`;
}

/** The counter key of an account's failures from the client's network block. */
export function accountCounterKey(config: Pick<AuthThrottleConfig, "ipv4Prefix" | "ipv6Prefix">, ip: string, user: string): string {
  // Folding more than any store does (all case, outer space) only merges spellings: never evades.
  const client = clientKey(ip);
  const block = networkBlock(isIP(client) === 4 ? client : ip, config.ipv4Prefix, config.ipv6Prefix);
  return `acct ${user.trim().toLowerCase()} ${block}`;
}

/** The delay after the client's n-th failure in the window: none for the first, then doubling to the max. */
export function failurePenaltyMs(config: Pick<AuthThrottleConfig, "penaltyBaseMs" | "maxPenaltyMs">, n: number): number {
  return n < 2 || config.penaltyBaseMs === 0 ? 0 : Math.min(config.maxPenaltyMs, config.penaltyBaseMs * 2 ** (n - 2));
}

/** A lockout from its counter key (ipCounterKey, accountCounterKey). */
export function lockoutOf(key: string, retryAfterSec: number): Lockout {
  const [kind, a, b] = key.split(" ") as [string, string, string | undefined];
  return kind === "ip" ? { scope: "ip", client: a, retryAfterSec } : { scope: "account", client: b ?? "", account: a, retryAfterSec };
}

interface Counter {
  failures: number[];
  lockedUntil: number;
}

export class AuthThrottle implements AuthThrottlePort {
  private readonly counters = new Map<string, Counter>();
  private readonly exempt: NetworkList;

  constructor(
    private readonly config: AuthThrottleConfig,
    exempt: readonly string[] = [],
    private readonly now: () => number = Date.now,
  ) {
    this.exempt = new NetworkList(exempt);
  }

  isExempt(ip: string): boolean {
    return this.exempt.contains(ip);
  }

  /** Before an AUTH starts: is this IP locked out? */
  checkIp(ip: string): ThrottleVerdict {
    return this.verdict(ipCounterKey(ip), "ip", ip);
  }

  /** Once the login name is known: is this account locked out from this IP's block? */
  checkAccount(ip: string, user: string): ThrottleVerdict {
    return this.verdict(this.accountKey(ip, user), "account", ip);
  }

  /**
   * Records a failure; returns the penalty delay for it and which lockouts it just started
   * (so the caller logs each once).
   */
  failed(ip: string, user?: string): { penaltyMs: number; locked: ("ip" | "account")[] } {
    if (this.isExempt(ip)) return { penaltyMs: 0, locked: [] };
    const locked: ("ip" | "account")[] = [];
    const ipCount = this.count(ipCounterKey(ip), this.config.ipFailures);
    if (ipCount.locked) locked.push("ip");
    if (user) {
      const acc = this.count(this.accountKey(ip, user), this.config.accountFailures);
      if (acc.locked) locked.push("account");
    }
    return { penaltyMs: failurePenaltyMs(this.config, ipCount.failures), locked };
  }

  /** A success forgets the account's failures from this block (the IP's own count stays). */
  succeeded(ip: string, user: string): void {
    this.counters.delete(this.accountKey(ip, user));
  }

  /** The lockouts in force now, for the web dashboard: a client (IP or /64) or an account from a block. */
  lockedOut(): Lockout[] {
    const now = this.now();
    const out: Lockout[] = [];
    for (const [key, c] of this.counters) {
      if (c.lockedUntil > now) out.push(lockoutOf(key, Math.ceil((c.lockedUntil - now) / 1000)));
    }
    return out;
  }

  private verdict(key: string, scope: "ip" | "account", ip: string): ThrottleVerdict {
    if (this.isExempt(ip)) return { refused: false };
    const c = this.counters.get(key);
    const now = this.now();
    if (!c || c.lockedUntil <= now) return { refused: false };
    return { refused: true, scope, retryAfterSec: Math.ceil((c.lockedUntil - now) / 1000) };
  }

  private count(key: string, threshold: number): { failures: number; locked: boolean } {
    const now = this.now();
    let c = this.counters.get(key);
    if (!c) {
      if (this.counters.size >= MAX_KEYS) this.counters.delete(this.counters.keys().next().value!);
      this.counters.set(key, (c = { failures: [], lockedUntil: 0 }));
    }
    const since = now - this.config.windowSec * 1000;
    c.failures = c.failures.filter((t) => t > since);
    c.failures.push(now);
    if (c.failures.length > threshold * 2) c.failures.splice(0, c.failures.length - threshold * 2);
    const wasLocked = c.lockedUntil > now;
    if (c.failures.length >= threshold) c.lockedUntil = now + this.config.lockoutSec * 1000;
    return { failures: c.failures.length, locked: !wasLocked && c.lockedUntil > now };
  }

  private accountKey(ip: string, user: string): string {
    return accountCounterKey(this.config, ip, user);
  }
}

/**
 * The client as per-client counters see it (AUTH failures here, connections and connection rate in
 * client-limits.ts): an IPv4 address as it is (an IPv4-mapped IPv6 address counts as its IPv4
 * address), an IPv6 address as its /64, since one site or subscriber gets at least a /64 and can
 * rotate through its 2^64 addresses at will (RFC 6177, RFC 4941). Anything else stays as given.
 */
export function clientKey(ip: string): string {
  const groups = ipv6Groups(ip);
  if (groups === null) return unmapIPv4(ip);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [groups[6]! >> 8, groups[6]! & 255, groups[7]! >> 8, groups[7]! & 255].join("."); // ::ffff:a.b.c.d
  }
  return networkBlock(ip, 32, 64);
}

/** "192.0.2.77" → "192.0.2.0/24"; IPv6 to its /64 (expanded, zeroed). */
export function networkBlock(ip: string, v4Prefix: number, v6Prefix: number): string {
  if (isIP(ip) === 4) {
    const n = ip.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
    const mask = v4Prefix === 0 ? 0 : (0xffffffff << (32 - v4Prefix)) >>> 0;
    const masked = (n & mask) >>> 0;
    return `${[24, 16, 8, 0].map((s) => (masked >>> s) & 255).join(".")}/${v4Prefix}`;
  }
  const groups = ipv6Groups(ip);
  if (groups !== null) {
    const out = groups.map((g, i) => {
      const keep = Math.max(0, Math.min(16, v6Prefix - 16 * i)); // bits of this group inside the prefix
      return (keep === 0 ? 0 : g & ((0xffff << (16 - keep)) & 0xffff)).toString(16);
    });
    return `${out.join(":")}/${v6Prefix}`;
  }
  return ip;
}

/** The eight 16-bit groups of an IPv6 address ("::" expanded, a dotted IPv4 tail and a zone id allowed), or null. */
function ipv6Groups(address: string): number[] | null {
  const ip = address.replace(/%.*$/, "");
  if (isIP(ip) !== 6) return null;
  let text = ip;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  return groups.length === 8 ? groups.map((g) => parseInt(g, 16)) : null;
}
