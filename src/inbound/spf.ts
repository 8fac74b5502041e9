/**
 * SPF (RFC 7208) for the two identities a client gives: MAIL FROM (§2.4) and HELO (§2.3), by
 * mailauth's evaluator (which enforces §4.6.4: 10 DNS-querying terms, 2 void lookups) over our
 * bounded resolver. Used at MAIL (policy/spf-at-mail.ts) and for the Authentication-Results field.
 */
import { isIP } from "node:net";
import { spf } from "mailauth";
import type { DnsResolve } from "./dns.js";

export type SpfResultCode = "pass" | "fail" | "softfail" | "neutral" | "none" | "temperror" | "permerror";

export interface SpfOutcome {
  identity: "mailfrom" | "helo";
  result: SpfResultCode;
  /** The identity checked: the address, or the HELO name. */
  subject: string;
  /** The domain whose record was evaluated (DMARC aligns with it, RFC 7489 §3.1.2). */
  domain: string;
  comment?: string;
}

export interface SpfQuery {
  ip: string;
  /** EHLO/HELO argument ("" when none). */
  helo: string;
  /** MAIL FROM ("" for the null reverse-path). */
  sender: string;
  /** Our name, in mailauth's comments. */
  hostname: string;
  resolve: DnsResolve;
}

/** A HELO name SPF can check: a domain, not an address literal (RFC 7208 §2.3). */
export function checkableHelo(helo: string): boolean {
  return helo.includes(".") && !helo.startsWith("[") && isIP(helo) === 0;
}

async function evaluate(q: SpfQuery, identity: SpfOutcome["identity"], sender: string, subject: string): Promise<SpfOutcome> {
  const r = await spf({
    sender,
    ip: q.ip,
    helo: q.helo || undefined,
    mta: q.hostname,
    resolver: q.resolve as Parameters<typeof spf>[0]["resolver"],
  });
  return { identity, result: r.status.result as SpfResultCode, subject, domain: r.domain, comment: r.status.comment };
}

/**
 * The MAIL FROM identity; with the null reverse-path, postmaster@HELO stands for it (§2.4).
 * null when there is nothing to check (null sender and a literal or missing HELO).
 */
export function spfMailFrom(q: SpfQuery): Promise<SpfOutcome> | null {
  if (q.sender !== "") return evaluate(q, "mailfrom", q.sender, q.sender);
  if (!checkableHelo(q.helo)) return null;
  return evaluate(q, "mailfrom", `postmaster@${q.helo}`, `postmaster@${q.helo}`);
}

/** The HELO identity (§2.3), or null when the HELO name is no domain. */
export function spfHelo(q: SpfQuery): Promise<SpfOutcome> | null {
  if (!checkableHelo(q.helo)) return null;
  return evaluate(q, "helo", `postmaster@${q.helo}`, q.helo);
}
