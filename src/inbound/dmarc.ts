/**
 * DMARC (RFC 7489) over mailauth 4.13.3's record discovery, with our own alignment and policy
 * reading. mailauth 4.x (fixed only in 5.0, which needs Node 22) gets these wrong, and each one
 * can let a message pass that the domain owner asked to refuse:
 *  - adkim=s / aspf=s fall through to relaxed alignment: a signature by a sibling host under the
 *    same organizational domain passes a strict policy (mailauth commit 0c4bab7, 5.0.0);
 *  - tag values are read as they appear: "adkim=S" or "adkim = s" are relaxed, "p=Reject" is no
 *    "reject" (RFC 7489 §6.4 allows white space around "=", ABNF literals ignore case);
 *  - several DMARC records at the author domain make discovery go on to the organizational
 *    domain, where §6.6.3 step 5 stops it ("no policy");
 *  - header.from names the organizational domain rather than the From: domain (RFC 8601 §2.7.2).
 */
import { createRequire } from "node:module";
import { dmarc } from "mailauth";
import type { DnsResolve } from "./dns.js";

type AlignmentFn = (fromDomain: string, domains: { domain: string }[], strict: boolean) => { domain: string } | false;
const tools = createRequire(import.meta.url)("mailauth/lib/tools.js") as { getAlignment: AlignmentFn };

export interface DmarcVerdict {
  result: "pass" | "fail" | "none" | "temperror" | "permerror";
  /** The From: domain the policy was looked up for. */
  fromDomain: string;
  /** The policy that applies (sp= for a subdomain under an organizational record). */
  policy?: "none" | "quarantine" | "reject";
  comment?: string;
  /** The aligned identifiers, when any. */
  aligned: { spf?: string; dkim?: string };
}

export interface DmarcInput {
  /** The From: addresses, as mailauth's DKIM verifier read them. */
  headerFrom: readonly string[];
  /** The SPF-authenticated domain: MAIL FROM's (or HELO's for the null sender) when SPF passed. */
  spfDomain?: string;
  /** The signing domains (d=) of the DKIM signatures that passed. */
  dkimDomains: readonly string[];
  resolve: DnsResolve;
}

/** A DMARC record's tags, values trimmed and the enumerated ones lower-cased (RFC 7489 §6.4). */
export function dmarcTags(record: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const part of record.split(";")) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    const key = part.slice(0, eq).trim().toLowerCase();
    const value = part.slice(eq + 1).trim();
    if (!tags.has(key)) tags.set(key, ["p", "sp", "adkim", "aspf", "fo", "rf"].includes(key) ? value.toLowerCase() : value);
  }
  return tags;
}

function domainOfAddress(address: string): string {
  return address
    .slice(address.lastIndexOf("@") + 1)
    .trim()
    .toLowerCase()
    .replace(/\.$/, "");
}

const POLICIES = new Set(["none", "quarantine", "reject"]);

/** Identifier alignment (RFC 7489 §3.1): identical domains (strict), or one organizational domain. */
export function aligned(fromDomain: string, domain: string, strict: boolean): boolean {
  const d = domain.toLowerCase().replace(/\.$/, "");
  if (strict) return d === fromDomain;
  return tools.getAlignment(fromDomain, [{ domain: d }], false) !== false;
}

/**
 * The verdict for the message: each distinct From: domain is evaluated, and the strictest result
 * wins (RFC 7489 §6.6.1 lets a receiver apply every author domain's policy). null: no From: to check.
 */
export async function evaluateDmarc(input: DmarcInput): Promise<DmarcVerdict | null> {
  const domains = [...new Set(input.headerFrom.map(domainOfAddress).filter((d) => d !== ""))];
  if (domains.length === 0) return null;
  const verdicts = await Promise.all(domains.map((d) => evaluateDomain(d, input)));
  const rank = (v: DmarcVerdict) =>
    v.result === "fail" ? (v.policy === "reject" ? 5 : v.policy === "quarantine" ? 4 : 3) : v.result === "temperror" ? 2 : v.result === "permerror" ? 1 : 0;
  return verdicts.reduce((worst, v) => (rank(v) > rank(worst) ? v : worst));
}

async function evaluateDomain(fromDomain: string, input: DmarcInput): Promise<DmarcVerdict> {
  const found = await dmarc({
    headerFrom: `postmaster@${fromDomain}`,
    spfDomains: input.spfDomain ? [input.spfDomain] : [],
    dkimDomains: input.dkimDomains.map((domain) => ({ domain })),
    resolver: input.resolve as Parameters<typeof dmarc>[0]["resolver"],
  });
  if (!found) return { result: "none", fromDomain, aligned: {} };
  const status = found.status.result;
  if (status === "temperror") return { result: "temperror", fromDomain, comment: "DNS failure looking up the DMARC record", aligned: {} };
  if (!found.rr) return { result: "none", fromDomain, aligned: {} };
  // mailauth does not say where it found the record: none at the author domain means the
  // organizational domain's (sp= applies); several there end discovery (§6.6.3 step 5).
  const atAuthor = await authorRecords(fromDomain, input.resolve);
  if (atAuthor > 1) return { result: "none", fromDomain, comment: "more than one DMARC record at the author domain", aligned: {} };
  const tags = dmarcTags(found.rr);
  const atOrg = atAuthor === 0;
  const chosen = (atOrg ? (tags.get("sp") ?? tags.get("p")) : tags.get("p")) ?? "";
  // RFC 7489 §6.6.3 step 6 and §6.3: an unknown p= value is treated as "none" here; a record
  // without a valid p= (and no rua=) gets no policy at all.
  const policy = POLICIES.has(chosen) ? (chosen as DmarcVerdict["policy"]) : "none";
  const strictDkim = tags.get("adkim") === "s";
  const strictSpf = tags.get("aspf") === "s";
  const dkim = input.dkimDomains.find((d) => aligned(fromDomain, d, strictDkim));
  const spf = input.spfDomain !== undefined && aligned(fromDomain, input.spfDomain, strictSpf) ? input.spfDomain : undefined;
  const modes = `${strictDkim ? "adkim=s" : ""} ${strictSpf ? "aspf=s" : ""}`.trim();
  return {
    result: dkim !== undefined || spf !== undefined ? "pass" : "fail",
    fromDomain,
    policy,
    comment: `p=${(policy ?? "none").toUpperCase()}${modes ? ` ${modes}` : ""}`,
    aligned: { spf, dkim },
  };
}

/** How many DMARC records the author domain publishes (cached: mailauth asked just before). */
async function authorRecords(fromDomain: string, resolve: DnsResolve): Promise<number> {
  try {
    const rows = (await resolve(`_dmarc.${fromDomain}`, "TXT")) as string[][];
    return rows.map((r) => r.join("").trim()).filter((r) => /^v=DMARC1\b/i.test(r)).length;
  } catch {
    return 0;
  }
}
