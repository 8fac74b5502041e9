/**
 * The DMARC items of `postern check --dns` (RFC 7489): the record at _dmarc.DOMAIN (or, without
 * one, the organisational domain's, found by mailauth), its policy, pct and report addresses.
 */
import getDmarcRecord from "mailauth/lib/dmarc/get-dmarc-record.js";
import { dnsError, mailauthResolver, type Resolver, txtRecords } from "./dns-lookup.js";
import { type CheckItem, item } from "./types.js";

const POLICIES = new Set(["none", "quarantine", "reject"]);

export interface DmarcRecord {
  tags: Map<string, string>;
  problems: string[];
}

/** RFC 7489 §6.3, §6.4: v=DMARC1 first, p= required, values within their sets. */
export function parseDmarc(record: string): DmarcRecord {
  const tags = new Map<string, string>();
  const problems: string[] = [];
  const parts = record
    .split(";")
    .map((p) => p.trim())
    .filter((p) => p !== "");
  for (const [i, part] of parts.entries()) {
    const eq = part.indexOf("=");
    if (eq <= 0) {
      problems.push(`${JSON.stringify(part)} is not tag=value`);
      continue;
    }
    const name = part.slice(0, eq).trim().toLowerCase();
    const value = part.slice(eq + 1).trim();
    if (i === 0 && (name !== "v" || value !== "DMARC1")) problems.push("v=DMARC1 must come first");
    tags.set(name, value);
  }
  const p = tags.get("p")?.toLowerCase();
  if (p === undefined) problems.push("no p= policy");
  else if (!POLICIES.has(p)) problems.push(`p=${tags.get("p")} is not none, quarantine or reject`);
  const sp = tags.get("sp")?.toLowerCase();
  if (sp !== undefined && !POLICIES.has(sp)) problems.push(`sp=${tags.get("sp")} is not none, quarantine or reject`);
  const pct = tags.get("pct");
  if (pct !== undefined && !(/^\d{1,3}$/.test(pct) && Number(pct) <= 100)) problems.push(`pct=${pct} is not 0–100`);
  for (const a of ["adkim", "aspf"]) {
    const v = tags.get(a);
    if (v !== undefined && v !== "r" && v !== "s") problems.push(`${a}=${v} is not r or s`);
  }
  for (const uri of reportUris(tags.get("rua"))) if (!/^[a-z][a-z0-9+.-]*:/i.test(uri)) problems.push(`rua ${JSON.stringify(uri)} is not a URI`);
  return { tags, problems };
}

/** rua=/ruf= lists (RFC 7489 §6.4): comma-separated URIs, each with an optional "!size". */
const reportUris = (list: string | undefined): string[] =>
  (list ?? "")
    .split(",")
    .map((u) => u.trim().replace(/!\d+[kmgt]?$/i, ""))
    .filter((u) => u !== "");

const FIX_DMARC = (domain: string) => `publish TXT at _dmarc.${domain}, e.g. "v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@${domain}"`;

export async function dmarcItems(resolver: Resolver, domain: string): Promise<CheckItem[]> {
  const name = `_dmarc.${domain}`;
  let records: string[];
  let inherited: string | undefined;
  try {
    records = (await txtRecords(resolver, name)).filter((r) => /^v\s*=\s*DMARC1\s*(;|$)/i.test(r));
    if (records.length === 0) {
      // No record of its own: receivers use the organisational domain's (RFC 7489 §6.6.3).
      const org = await getDmarcRecord(domain, mailauthResolver(resolver));
      if (org !== false && org.isOrgRecord) {
        records = [org.rr];
        inherited = "the organisational domain";
      }
    }
  } catch (err) {
    return [item("dmarc", "FAIL", `TXT lookup of ${name} failed: ${dnsError(err)}`)];
  }
  if (records.length === 0)
    return [item("dmarc", "FAIL", `no DMARC record at ${name}: receivers apply no policy to mail forged as ${domain}`, FIX_DMARC(domain))];
  if (records.length > 1) {
    return [item("dmarc", "FAIL", `${records.length} DMARC records at ${name}: receivers ignore them all (RFC 7489 §6.6.3)`, "keep one v=DMARC1 record")];
  }
  const record = records[0]!;
  const { tags, problems } = parseDmarc(record);
  const shown = `${JSON.stringify(record)}${inherited ? ` (from ${inherited})` : ""}`;
  if (problems.length > 0) return [item("dmarc", "FAIL", `${shown}: ${problems.join("; ")}`, FIX_DMARC(domain))];

  const items: CheckItem[] = [];
  // A subdomain under the organisational record gets sp= (RFC 7489 §6.3), else p=.
  const policy = ((inherited ? tags.get("sp") : undefined) ?? tags.get("p")!).toLowerCase();
  const summary = `p=${tags.get("p")}${tags.has("sp") ? ` sp=${tags.get("sp")}` : ""} pct=${tags.get("pct") ?? "100"}`;
  if (policy === "none")
    items.push(
      item(
        "dmarc",
        "WARN",
        `${shown}: policy none (${summary}): forged mail is reported but still delivered`,
        "when reports show your mail aligned, move to p=quarantine, then p=reject",
      ),
    );
  else items.push(item("dmarc", "PASS", `${shown}: ${summary}`));
  const pct = Number(tags.get("pct") ?? "100");
  if (pct < 100 && policy !== "none")
    items.push(item("dmarc-pct", "WARN", `pct=${pct}: the policy applies to ${pct} % of failing mail only`, "raise pct to 100"));

  const rua = reportUris(tags.get("rua"));
  if (rua.length === 0)
    items.push(item("dmarc-reports", "WARN", "no rua=: you get no aggregate reports of who sends as you", `add rua=mailto:dmarc-reports@${domain}`));
  else {
    // A report address in another domain must be authorised by that domain (RFC 7489 §7.1).
    const unauthorised: string[] = [];
    for (const uri of rua) {
      const target = /^mailto:[^@]+@([^?!]+)/i.exec(uri)?.[1]?.toLowerCase();
      if (!target || target === domain || target.endsWith(`.${domain}`) || domain.endsWith(`.${target}`)) continue;
      const auth = await txtRecords(resolver, `${domain}._report._dmarc.${target}`).catch(() => []);
      if (!auth.some((r) => /^v\s*=\s*DMARC1/i.test(r))) unauthorised.push(uri);
    }
    items.push(
      unauthorised.length > 0
        ? item(
            "dmarc-reports",
            "WARN",
            `rua ${unauthorised.join(", ")}: the receiving domain does not authorise reports for ${domain}, so none are sent`,
            `publish TXT "v=DMARC1" at ${domain}._report._dmarc.<that domain>`,
          )
        : item("dmarc-reports", "PASS", `aggregate reports to ${rua.join(", ")}`),
    );
  }
  return items;
}
