/**
 * The SPF items of `postern check --dns` (RFC 7208): exactly one `v=spf1` record, its terms
 * well-formed, how it ends, the whole walk (includes, lookup limits) evaluated by mailauth, and
 * whether it lets this server's addresses send. The evaluation is mailauth's, not ours.
 */
import { isIP } from "node:net";
import { spf } from "mailauth/lib/spf/index.js";
import { dnsError, mailauthResolver, type Resolver, txtRecords } from "./dns-lookup.js";
import { type CheckItem, item } from "./types.js";

/** RFC 5737 TEST-NET-1: no real sender, so the walk visits every include and counts every lookup. */
const NOBODY = "192.0.2.1";

export interface SpfShape {
  problems: string[];
  /** The qualifier of the `all` mechanism ("+", "-", "~", "?"), if there is one. */
  all?: string;
  redirect: boolean;
  ptr: boolean;
}

const CIDR4 = (n: string | undefined) => n === undefined || Number(n) <= 32;
const CIDR6 = (n: string | undefined) => n === undefined || Number(n) <= 128;

/** RFC 7208 §4.6.1 and §12 grammar, term by term; macros are taken as they are written. */
export function spfShape(record: string): SpfShape {
  const shape: SpfShape = { problems: [], redirect: false, ptr: false };
  if (/[^\x20-\x7e]/.test(record)) shape.problems.push("characters outside printable ASCII");
  const terms = record.trim().split(/ +/).slice(1);
  const seen = new Map<string, number>();
  for (const term of terms) {
    const modifier = /^([a-z][a-z0-9_.-]*)=(.*)$/i.exec(term);
    if (modifier) {
      const name = modifier[1]!.toLowerCase();
      seen.set(name, (seen.get(name) ?? 0) + 1);
      if ((name === "redirect" || name === "exp") && modifier[2] === "") shape.problems.push(`${term}: no domain`);
      if (name === "redirect") shape.redirect = true;
      continue;
    }
    const mech = /^([+\-~?]?)(all|include|a|mx|ptr|ip4|ip6|exists)(?=$|[:/])(.*)$/i.exec(term);
    if (!mech) {
      shape.problems.push(`unknown term ${JSON.stringify(term)}`);
      continue;
    }
    const [, qualifier, nameRaw, arg] = mech as unknown as [string, string, string, string];
    const name = nameRaw.toLowerCase();
    let ok: boolean;
    if (name === "all") {
      ok = arg === "";
      shape.all ??= qualifier || "+";
    } else if (name === "include" || name === "exists") ok = /^:[\x21-\x7e]+$/.test(arg);
    else if (name === "a" || name === "mx") {
      const m = /^(?::[^/]+)?(?:\/(\d{1,2}))?(?:\/\/(\d{1,3}))?$/.exec(arg);
      ok = m !== null && CIDR4(m[1]) && CIDR6(m[2]);
    } else if (name === "ptr") {
      ok = /^(:[^/]+)?$/.test(arg);
      shape.ptr = true;
    } else {
      const m = /^:([^/]+)(?:\/(\d{1,3}))?$/.exec(arg);
      ok = m !== null && (name === "ip4" ? isIP(m[1]!) === 4 && CIDR4(m[2]) : isIP(m[1]!) === 6 && CIDR6(m[2]));
    }
    if (!ok) shape.problems.push(`malformed ${JSON.stringify(term)}`);
  }
  for (const name of ["redirect", "exp"]) if ((seen.get(name) ?? 0) > 1) shape.problems.push(`${name}= more than once (RFC 7208 §6)`);
  return shape;
}

const FIX_PUBLISH = (domain: string) =>
  `publish one TXT record at ${domain}, e.g. "v=spf1 mx -all" (or ip4:/ip6: with this server's addresses); Postern: dns.ownAddresses lists them for this check`;

export async function spfItems(resolver: Resolver, domain: string, ips: string[]): Promise<CheckItem[]> {
  let txt: string[];
  try {
    txt = await txtRecords(resolver, domain);
  } catch (err) {
    return [item("spf", "FAIL", `TXT lookup of ${domain} failed: ${dnsError(err)}`)];
  }
  const records = txt.filter((r) => /^v=spf1(?: |$)/i.test(r));
  if (records.length === 0)
    return [item("spf", "FAIL", `no SPF record (TXT "v=spf1 …") at ${domain}: receivers cannot tell your servers from forgers`, FIX_PUBLISH(domain))];
  if (records.length > 1) {
    return [
      item(
        "spf",
        "FAIL",
        `${records.length} SPF records at ${domain}: a permerror for every message (RFC 7208 §4.5): ${records.map((r) => JSON.stringify(r)).join(", ")}`,
        "merge them into one v=spf1 record",
      ),
    ];
  }
  const record = records[0]!;
  const shape = spfShape(record);
  const items: CheckItem[] = [];
  if (shape.problems.length > 0) items.push(item("spf", "FAIL", `${JSON.stringify(record)}: ${shape.problems.join("; ")}`, "RFC 7208 §5, §6: fix the terms"));
  else if (shape.all === "+")
    items.push(item("spf", "FAIL", `${JSON.stringify(record)}: +all lets every host on the Internet pass`, "end the record with -all or ~all"));
  else if ((shape.all === undefined && !shape.redirect) || shape.all === "?")
    items.push(item("spf", "WARN", `${JSON.stringify(record)}: ends without -all or ~all, so any host gets "neutral"`, "end the record with -all (or ~all)"));
  else if (shape.ptr)
    items.push(
      item("spf", "WARN", `${JSON.stringify(record)}: uses ptr, which RFC 7208 §5.5 says not to use`, "list the addresses (ip4:/ip6:) or a/mx instead"),
    );
  else items.push(item("spf", "PASS", JSON.stringify(record)));

  // The whole walk: includes that have no record, more than 10 lookups, more than 2 void ones.
  const walk = await spf({ sender: `postmaster@${domain}`, ip: NOBODY, mta: "postern-check", resolver: mailauthResolver(resolver) });
  const lookups = walk.lookups ? ` (${walk.lookups.count} of ${walk.lookups.limit} DNS lookups, ${walk.lookups.void} void)` : "";
  if (walk.status.result === "permerror")
    items.push(item("spf-evaluation", "FAIL", `permerror: ${walk.status.comment ?? ""}${lookups}`, "RFC 7208 §4.6.4: at most 10 lookups, 2 void"));
  else if (walk.status.result === "temperror") items.push(item("spf-evaluation", "WARN", `temperror: ${walk.status.comment ?? ""}`));
  else items.push(item("spf-evaluation", "PASS", `evaluates without error${lookups}`));

  if (ips.length === 0)
    items.push(item("spf-allows", "NOT TESTED", "give --ip ADDR (or dns.ownAddresses in the configuration) to check this server's address"));
  for (const ip of ips) {
    const r = await spf({ sender: `postmaster@${domain}`, ip, mta: "postern-check", resolver: mailauthResolver(resolver) });
    const id = `spf-allows (${ip})`;
    const result = r.status.result;
    if (result === "pass") items.push(item(id, "PASS", `spf=pass: ${domain} lets ${ip} send`));
    else if (result === "temperror") items.push(item(id, "WARN", `spf=temperror: ${r.status.comment ?? ""}`));
    else
      items.push(
        item(
          id,
          "FAIL",
          `spf=${result}: ${domain} does not let ${ip} send; mail from it fails SPF`,
          `add ${isIP(ip) === 6 ? "ip6" : "ip4"}:${ip} to the record`,
        ),
      );
  }
  return items;
}
