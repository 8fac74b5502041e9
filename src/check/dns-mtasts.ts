/**
 * The MTA-STS items of `postern check --dns` (RFC 8461): the `_mta-sts` TXT record (§3.1), the
 * policy fetched as a sender fetches it (§3.3: verified HTTPS, no redirects, text/plain, strict
 * parse), and whether each MX host of the domain matches the policy's mx patterns (§4.1) — an MX
 * outside an enforce policy is one that MTA-STS senders refuse to deliver to.
 */
import { fetchMtaStsPolicy, mtaStsHost } from "../delivery/tls-policy/mta-sts-fetch.js";
import { mxMatches, parseMtaStsTxt } from "../delivery/tls-policy/mta-sts-parse.js";
import { dnsError, isNoRecord, type Resolver, txtRecords } from "./dns-lookup.js";
import { type CheckItem, item } from "./types.js";

export interface MtaStsCheckOptions {
  /** Port of mta-sts.DOMAIN (outbound.mtaSts.httpsPort; 443 except in test rigs). */
  httpsPort?: number;
  /** PEM CA bundle for the policy host; absent: the system's roots, as real senders use. */
  ca?: string | Buffer;
  timeoutMs?: number;
}

/** RFC 8461 §3.2 suggests weeks; under a day a policy lapses between a sender's visits. */
const SHORT_MAX_AGE = 86_400;

export async function mtaStsItems(resolver: Resolver, domain: string, o: MtaStsCheckOptions = {}): Promise<CheckItem[]> {
  const name = `_mta-sts.${domain}`;
  let records: string[];
  try {
    records = await txtRecords(resolver, name);
  } catch (err) {
    return [item("mta-sts", "WARN", `TXT lookup of ${name} failed: ${dnsError(err)}`)];
  }
  const txt = parseMtaStsTxt(records);
  if (txt.kind === "none")
    return [
      item(
        "mta-sts",
        "INFO",
        `no MTA-STS record at ${name}: senders may deliver without verified TLS (RFC 8461)`,
        `serve a policy at https://${mtaStsHost(domain)}/.well-known/mta-sts.txt and publish ${name}. IN TXT "v=STSv1; id=1"`,
      ),
    ];
  if (txt.kind === "invalid")
    return [
      item(
        "mta-sts",
        "WARN",
        `${name}: ${txt.reason}; senders treat ${domain} as having no MTA-STS (RFC 8461 §3.1)`,
        `publish exactly one record "v=STSv1; id=ID" (ID: 1-32 letters and digits)`,
      ),
    ];
  const items: CheckItem[] = [item("mta-sts", "PASS", JSON.stringify(txt.record))];

  const fetched = await fetchMtaStsPolicy(domain, {
    resolver,
    ...(o.httpsPort !== undefined ? { port: o.httpsPort } : {}),
    ...(o.ca !== undefined ? { ca: o.ca } : {}),
    timeoutMs: o.timeoutMs ?? 10_000,
  });
  if (!fetched.ok) {
    items.push(
      item(
        "mta-sts-policy",
        "WARN",
        `${fetched.resultType}: ${fetched.detail}; senders without a cached policy deliver as if there were no MTA-STS`,
        fetched.resultType === "sts-webpki-invalid"
          ? `give ${mtaStsHost(domain)} a certificate for that name from a public CA`
          : `serve the policy with HTTP 200, Content-Type text/plain, no redirect (RFC 8461 §3.2, §3.3)`,
      ),
    );
    return items;
  }
  const p = fetched.policy;
  const summary = `mode ${p.mode}, mx ${p.mx.join(", ") || "(none)"}, max_age ${p.maxAge} (HTTP ${fetched.status})`;
  if (p.mode === "enforce") items.push(item("mta-sts-policy", "PASS", summary));
  else if (p.mode === "testing")
    items.push(
      item("mta-sts-policy", "INFO", `${summary}: senders report failures but still deliver`, "switch to mode: enforce once TLS-RPT reports are clean"),
    );
  else items.push(item("mta-sts-policy", "INFO", `${summary}: the domain has withdrawn MTA-STS (RFC 8461 §8.3)`));
  if (p.maxAge < SHORT_MAX_AGE && p.mode !== "none")
    items.push(item("mta-sts-max-age", "WARN", `max_age ${p.maxAge}s is under a day: the policy lapses between visits`, "use weeks, e.g. max_age: 1209600"));
  if (p.mode === "none") return items;

  // §4.1: every MX host a sender may pick must match the policy.
  let hosts: string[];
  try {
    hosts = (await resolver.resolveMx(domain)).map((r) => r.exchange.toLowerCase()).filter((h) => h !== "" && h !== ".");
  } catch (err) {
    if (!isNoRecord(err)) return items; // the mx items report the failure
    hosts = [domain]; // RFC 5321 §5.1 implicit MX
  }
  for (const host of hosts) {
    const id = `mta-sts-mx (${host})`;
    if (mxMatches(host, p.mx)) items.push(item(id, "PASS", `matches the policy`));
    else
      items.push(
        item(
          id,
          p.mode === "enforce" ? "FAIL" : "WARN",
          `${host} matches none of ${p.mx.join(", ")}: ${p.mode === "enforce" ? "MTA-STS senders will not deliver to it" : "senders report it as a failure"}`,
          `add "mx: ${host}" to the policy and change the id in ${name}`,
        ),
      );
  }
  return items;
}
