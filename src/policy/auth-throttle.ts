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

interface Counter {
  failures: number[];
  lockedUntil: number;
}

export class AuthThrottle {
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
    return this.verdict(`ip ${unmapIPv4(ip)}`, "ip", ip);
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
    const ipCount = this.count(`ip ${unmapIPv4(ip)}`, this.config.ipFailures);
    if (ipCount.locked) locked.push("ip");
    if (user) {
      const acc = this.count(this.accountKey(ip, user), this.config.accountFailures);
      if (acc.locked) locked.push("account");
    }
    const n = ipCount.failures;
    const penaltyMs = n < 2 || this.config.penaltyBaseMs === 0 ? 0 : Math.min(this.config.maxPenaltyMs, this.config.penaltyBaseMs * 2 ** (n - 2));
    return { penaltyMs, locked };
  }

  /** A success forgets the account's failures from this block (the IP's own count stays). */
  succeeded(ip: string, user: string): void {
    this.counters.delete(this.accountKey(ip, user));
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
    return `acct ${user.trim().toLowerCase()} ${networkBlock(unmapIPv4(ip), this.config.ipv4Prefix, this.config.ipv6Prefix)}`;
  }
}

/** "192.0.2.77" → "192.0.2.0/24"; IPv6 to its /64 (expanded, zeroed). */
export function networkBlock(ip: string, v4Prefix: number, v6Prefix: number): string {
  if (isIP(ip) === 4) {
    const n = ip.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
    const mask = v4Prefix === 0 ? 0 : (0xffffffff << (32 - v4Prefix)) >>> 0;
    const masked = (n & mask) >>> 0;
    return `${[24, 16, 8, 0].map((s) => (masked >>> s) & 255).join(".")}/${v4Prefix}`;
  }
  if (isIP(ip) === 6) {
    const [head, tail = ""] = ip.split("::");
    const h = head ? head.split(":") : [];
    const t = tail ? tail.split(":") : [];
    const groups = ip.includes("::") ? [...h, ...Array(8 - h.length - t.length).fill("0"), ...t] : h;
    let bits = groups.map((g) => parseInt(g || "0", 16).toString(2).padStart(16, "0")).join("");
    bits = bits.slice(0, v6Prefix).padEnd(128, "0");
    const out = [];
    for (let i = 0; i < 128; i += 16) out.push(parseInt(bits.slice(i, i + 16), 2).toString(16));
    return `${out.join(":")}/${v6Prefix}`;
  }
  return ip;
}
