/**
 * The TLS-RPT items of `postern check --dns` (RFC 8460 §3): the record at _smtp._tls.DOMAIN, parsed
 * as strictly as a sender parses it, and where its reports go.
 */
import { lookupTlsRpt } from "../delivery/tls-policy/tls-report.js";
import type { Resolver } from "./dns-lookup.js";
import { type CheckItem, item } from "./types.js";

const FIX_TLSRPT = (domain: string) => `publish TXT at _smtp._tls.${domain}, e.g. "v=TLSRPTv1; rua=mailto:tls-reports@${domain}"`;

export async function tlsRptItems(resolver: Resolver, domain: string): Promise<CheckItem[]> {
  const name = `_smtp._tls.${domain}`;
  const found = await lookupTlsRpt(resolver, domain);
  switch (found.kind) {
    case "error":
      return [item("tlsrpt", "FAIL", `TXT lookup of ${name} failed: ${found.detail}`)];
    case "none":
      return [item("tlsrpt", "WARN", `no TLS-RPT record at ${name}: senders cannot tell you when TLS to your MX fails`, FIX_TLSRPT(domain))];
    case "invalid":
      return [
        item(
          "tlsrpt",
          "WARN",
          `${found.records.map((r) => JSON.stringify(r)).join(", ")}: ${found.problem}; senders ignore it (RFC 8460 §3)`,
          FIX_TLSRPT(domain),
        ),
      ];
    case "record":
      return [item("tlsrpt", "PASS", `${JSON.stringify(found.record)}: reports to ${found.rua.join(", ")}`)];
  }
}
