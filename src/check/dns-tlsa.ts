/**
 * `postern check DOMAIN --dns`, DANE section (RFC 7672): each MX host's TLSA records, whether the
 * configured resolver says they are DNSSEC-authenticated, and whether they match the chain the
 * host presents on port 25 after STARTTLS.
 */
import { X509Certificate } from "node:crypto";
import type { DetailedPeerCertificate } from "node:tls";
import { parseEhloReply } from "../delivery/smtp-reply.js";
import { matchDane } from "../delivery/tls-policy/dane.js";
import { type DnssecMode, isUsableTlsa, mxAuthenticated, queryTlsa, type TlsaAnswer, tlsaName, tlsaPresentation } from "../delivery/tls-policy/tlsa.js";
import { addressesOf, dnsError, isNoRecord, type Resolver } from "./dns-lookup.js";
import { Probe, ProbeClosed } from "./probe.js";
import { type CheckItem, item } from "./types.js";

export interface DaneCheckOptions {
  /** dns.dnssec: whether delivery would use DANE at all. */
  mode: DnssecMode;
  /** Resolvers for the TLSA queries (dns.servers or --dns-server); empty: the system's. */
  servers: string[];
  timeoutMs: number;
  /** The EHLO name for the STARTTLS probe. */
  ehlo: string;
  /** The SMTP port of the MX hosts; 25 but for tests. */
  port?: number;
}

const WHY_OFF =
  "the AD bit is only as trustworthy as the path to a validating resolver (RFC 6840 §5.7, RFC 7672 §1.3); with a local validating resolver in dns.servers, set dns.dnssec: trust-ad";

/** The chain as the peer sent it, leaf first (node links each certificate to its issuer). */
export function presentedChain(peer: DetailedPeerCertificate): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<string>();
  for (let c: DetailedPeerCertificate | undefined = peer; c?.raw && !seen.has(c.fingerprint256); c = c.issuerCertificate) {
    seen.add(c.fingerprint256);
    chain.push(new X509Certificate(c.raw));
  }
  return chain;
}

/** Connect, EHLO, STARTTLS: the chain `host` presents, or why there is none. */
async function chainOf(mxHost: string, address: string, o: DaneCheckOptions): Promise<{ chain: X509Certificate[] } | { noTls: string } | { error: string }> {
  let p: Probe | undefined;
  try {
    p = await Probe.open(address, o.port ?? 25, o.timeoutMs);
    const greeting = await p.reply();
    if (greeting.code !== 220) return { error: `greeting ${greeting.code}` };
    const ehlo = await p.ehlo(o.ehlo);
    if (ehlo.code !== 250 || !parseEhloReply(ehlo).starttls) return { noTls: "STARTTLS is not offered" };
    // No PKIX check: DANE decides (RFC 7672 §3.1); the MX name as SNI (§8.1).
    const refused = await p.starttls(mxHost, { rejectUnauthorized: false, servername: mxHost });
    if (refused) return { noTls: `STARTTLS refused: ${refused.code}` };
    return { chain: presentedChain(p.tlsSocket.getPeerCertificate(true)) };
  } catch (err) {
    return { error: err instanceof ProbeClosed ? "connection closed" : (err as Error).message };
  } finally {
    await p?.quit().catch(() => undefined);
  }
}

/** The MX hosts of `domain`, or the domain itself as implicit MX (RFC 5321 §5.1); [] for null MX or a failed lookup (the MX items say why). */
async function mxHosts(resolver: Resolver, domain: string): Promise<string[]> {
  try {
    const records = (await resolver.resolveMx(domain)).sort((a, b) => a.priority - b.priority);
    return records.map((r) => r.exchange.replace(/\.$/, "").toLowerCase()).filter((h) => h !== "");
  } catch (err) {
    return isNoRecord(err) ? [domain] : [];
  }
}

/** The DANE items for `domain`: "dane" (is DANE used), then per MX host "tlsa (HOST)" and "dane-match (HOST)". */
export async function tlsaItems(resolver: Resolver, domain: string, o: DaneCheckOptions): Promise<CheckItem[]> {
  const items: CheckItem[] = [];
  const port = o.port ?? 25;
  if (o.mode === "off") items.push(item("dane", "INFO", `DANE is not used for delivery: dns.dnssec is off; ${WHY_OFF}`));
  // RFC 7672 §2.2.1: asked once, when authenticated TLSA records make it matter.
  let mxSecure: Promise<boolean | string> | undefined;
  const mxStatus = () => (mxSecure ??= mxAuthenticated(domain, o.servers, o.timeoutMs).catch((err: Error) => err.message));
  for (const host of await mxHosts(resolver, domain)) {
    const name = tlsaName(host, port);
    let answer: TlsaAnswer;
    try {
      answer = await queryTlsa(name, o.servers, o.timeoutMs);
    } catch (err) {
      if (o.mode === "off") continue;
      items.push(
        item(`tlsa (${host})`, "FAIL", `TLSA lookup of ${name} failed: ${(err as Error).message}; DANE senders will not deliver to ${host} (RFC 7672 §2.2)`),
      );
      continue;
    }
    const id = `tlsa (${host})`;
    if (answer.rcode !== "NOERROR" && answer.rcode !== "NXDOMAIN") {
      if (o.mode !== "off") items.push(item(id, "FAIL", `TLSA lookup of ${name}: ${answer.rcode}; DANE senders will not deliver to ${host} (RFC 7672 §2.2)`));
      continue;
    }
    if (answer.records.length === 0) {
      if (o.mode !== "off")
        items.push(item(id, "INFO", `no TLSA records at ${name}${answer.authenticated ? " (authenticated denial)" : ""}: DANE does not apply to ${host}`));
      continue;
    }
    const text = tlsaPresentation(answer.records).join(", ");
    const at = answer.name === name ? name : `${name} (via CNAME ${answer.name})`;
    if (o.mode === "off") items.push(item(id, "INFO", `${at}: ${text} (AD=${answer.authenticated ? 1 : 0}; not used here, dns.dnssec is off)`));
    else if (!answer.authenticated)
      items.push(
        item(
          id,
          "WARN",
          `${at}: ${text}, but not DNSSEC-authenticated (no AD bit): senders ignore them (RFC 7672 §2.2)`,
          "sign the zone with DNSSEC, or check that dns.servers is a validating resolver",
        ),
      );
    else if (!answer.records.some(isUsableTlsa))
      items.push(
        item(id, "FAIL", `${at}: ${text}: none usable for SMTP (only usages 2 and 3, RFC 7672 §3.1.3)`, "publish 3 1 1 (DANE-EE, SPKI, SHA-256) records"),
      );
    else {
      const mx = await mxStatus();
      if (mx === true) items.push(item(id, "PASS", `${at} (authenticated): ${text}`));
      else
        items.push(
          item(
            id,
            "WARN",
            `${at} (authenticated): ${text}, but the MX records of ${domain} are not${typeof mx === "string" ? ` (${mx})` : " (no AD bit)"}: senders ignore the TLSA records of its MX hosts (RFC 7672 §2.2.1)`,
            "sign the zone of the MX records with DNSSEC",
          ),
        );
    }
    items.push(await matchItem(resolver, host, answer, o));
  }
  return items;
}

/** Does what the host presents match its TLSA records? */
async function matchItem(resolver: Resolver, host: string, answer: TlsaAnswer, o: DaneCheckOptions): Promise<CheckItem> {
  const id = `dane-match (${host})`;
  let addresses: string[];
  try {
    addresses = await addressesOf(resolver, host);
  } catch (err) {
    return item(id, "NOT TESTED", `address lookup of ${host} failed: ${dnsError(err)}`);
  }
  if (addresses.length === 0) return item(id, "NOT TESTED", `${host} has no address`);
  const got = await chainOf(host, addresses[0]!, o);
  if ("error" in got) return item(id, "NOT TESTED", `cannot reach ${host} (${addresses[0]}) on port ${o.port ?? 25}: ${got.error}`);
  if ("noTls" in got) return item(id, "FAIL", `${host}: ${got.noTls}; with TLSA records published, DANE senders defer (RFC 7672 §2.2)`);
  const verdict = matchDane(answer.records, got.chain, host, new Date(), o.port ?? 25);
  return verdict.ok
    ? item(id, "PASS", `the certificate ${host} presents matches TLSA ${verdict.matched.length > 40 ? `${verdict.matched.slice(0, 40)}…` : verdict.matched}`)
    : item(id, "FAIL", `${verdict.detail} [${verdict.resultType}]`, "publish TLSA records for the certificate in use (before a key change: old and new)");
}
