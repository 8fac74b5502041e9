/**
 * `postern check DOMAIN --dns`: what the world's DNS says about a mail domain — MX, SPF, DKIM
 * (against the local keys), DMARC — as PASS/WARN/FAIL items like the server probes.
 */
import { isIP } from "node:net";
import { normaliseDomain } from "../base/domain.js";
import { dkimItems, type LocalDkimKey } from "./dns-dkim.js";
import { dmarcItems } from "./dns-dmarc.js";
import { addressesOf, dnsError, isNoRecord, type Resolver } from "./dns-lookup.js";
import { type MtaStsCheckOptions, mtaStsItems } from "./dns-mtasts.js";
import { spfItems } from "./dns-spf.js";
import { type DaneCheckOptions, tlsaItems } from "./dns-tlsa.js";
import { tlsRptItems } from "./dns-tlsrpt.js";
import { type CheckItem, item } from "./types.js";

export interface DnsCheckTarget {
  domain: string;
  resolver: Resolver;
  /** This server's public addresses (--ip, else dns.ownAddresses): SPF must allow them. */
  ips: string[];
  /** The key store's keys for the domain; undefined when no configuration was read, or a reason they could not be read. */
  localKeys: LocalDkimKey[] | undefined | { unreadable: string };
  /** More selectors to look up (--selector). */
  selectors: string[];
  /** DANE section (dns-tlsa.ts); absent: not checked. */
  dane?: DaneCheckOptions;
  /** MTA-STS section (dns-mtasts.ts); absent: not checked. */
  mtaSts?: MtaStsCheckOptions;
}

export async function runDnsCheck(t: DnsCheckTarget): Promise<CheckItem[]> {
  const domain = normaliseDomain(t.domain);
  return [
    ...(await mxItems(t.resolver, domain, t.ips)),
    ...(await spfItems(t.resolver, domain, t.ips)),
    ...(await dkimItems(t.resolver, domain, t.localKeys, t.selectors)),
    ...(await dmarcItems(t.resolver, domain)),
    ...(await tlsRptItems(t.resolver, domain)),
    ...(t.mtaSts ? await mtaStsItems(t.resolver, domain, t.mtaSts) : []),
    ...(t.dane ? await tlsaItems(t.resolver, domain, t.dane) : []),
  ];
}

/** RFC 5321 §5.1: the MX hosts, each with an address; none at all falls back to the domain's own A/AAAA. */
export async function mxItems(resolver: Resolver, domain: string, ips: string[]): Promise<CheckItem[]> {
  let records: { exchange: string; priority: number }[];
  try {
    records = await resolver.resolveMx(domain);
  } catch (err) {
    if (!isNoRecord(err)) return [item("mx", "FAIL", `MX lookup of ${domain} failed: ${dnsError(err)}`)];
    const own = await addressesOf(resolver, domain).catch(() => []);
    return own.length > 0
      ? [
          item(
            "mx",
            "WARN",
            `no MX record: senders use ${domain}'s own address (${own.join(", ")}) as an implicit MX`,
            `publish "${domain}. IN MX 10 mail.${domain}."`,
          ),
        ]
      : [item("mx", "FAIL", `no MX record and no address for ${domain}: mail to it cannot be delivered`, `publish "${domain}. IN MX 10 mail.${domain}."`)];
  }
  if (records.length === 1 && (records[0]!.exchange === "" || records[0]!.exchange === ".")) {
    return [item("mx", "INFO", `null MX (RFC 7505): ${domain} receives no mail`)];
  }
  records.sort((a, b) => a.priority - b.priority);
  const items: CheckItem[] = [item("mx", "PASS", records.map((r) => `${r.priority} ${r.exchange}`).join(", "))];
  const reached = new Set<string>();
  for (const r of records) {
    const id = `mx-host (${r.exchange})`;
    if (isIP(r.exchange)) {
      items.push(item(id, "FAIL", "an MX names a host, never an address (RFC 7505 §3, RFC 5321 §5.1)", "point the MX at a name with A/AAAA records"));
      continue;
    }
    try {
      const addresses = await addressesOf(resolver, r.exchange);
      for (const a of addresses) reached.add(a);
      items.push(
        addresses.length > 0
          ? item(id, "PASS", addresses.join(", "))
          : item(id, "FAIL", `${r.exchange} has no A or AAAA record: senders skip it`, `give ${r.exchange} an address`),
      );
    } catch (err) {
      items.push(item(id, "FAIL", `address lookup failed: ${dnsError(err)}`));
    }
  }
  if (ips.length > 0 && !ips.some((ip) => reached.has(ip))) {
    items.push(item("mx-this-server", "INFO", `no MX host resolves to ${ips.join(", ")} (fine if this server only sends)`));
  }
  return items;
}
