/**
 * `postern dns DOMAIN`: every DNS record an admin should publish for one of our domains, in
 * zone-file form (absolute names), grouped with a comment each; suggestions are marked as such.
 * Nothing is looked up: the records follow from the configuration and the DKIM key store.
 */
import type { Config } from "../config/schema.js";
import { dkimKeysDir, listKeys, publishedKeys, zoneLine } from "../dkim/keys.js";
import { incomingOf } from "../web/autoconfig-settings.js";
import { mtaStsPolicy, mtaStsPolicyId } from "../web/autoconfig-mtasts.js";
import { commandConfig } from "./config-source.js";

const abs = (name: string) => `${name.replace(/\.$/, "")}.`;
const txt = (name: string, value: string) => `${abs(name)} IN TXT "${value}"`;

/** The lines `postern dns` prints; `dkim` are the DKIM records (zone lines) of the domain. */
export function dnsRecords(config: Config, domain: string, dkim: string[]): string[] {
  const d = domain.toLowerCase().replace(/\.$/, "");
  if (!config.domains.some((x) => x.toLowerCase() === d)) throw new Error(`${domain} is not one of our domains (domains: ${config.domains.join(", ")})`);
  const mx = abs(config.hostname);
  const web = abs(config.web.hostname ?? config.hostname);
  const out: string[] = [`; DNS records for ${d}, as postern's configuration has them (zone-file form)`, ""];

  out.push("; Mail exchanger (RFC 5321 §5.1): mail for the domain goes to this server.");
  out.push(`${abs(d)} IN MX 10 ${mx}`);
  out.push(`; ${config.hostname} itself needs A/AAAA records, and their PTR records should name it.`, "");

  out.push("; Submission for mail clients (RFC 6186 §3.1; implicit TLS first, RFC 8314 §3.3).");
  const configured = config.listeners.filter((l) => l.mode !== "mta");
  const ports = (mode: string) => [...new Set(configured.filter((l) => l.mode === mode && l.port !== 0).map((l) => l.port))];
  for (const port of ports("submissions")) out.push(`_submissions._tcp.${abs(d)} IN SRV 0 1 ${port} ${mx}`);
  for (const port of ports("submission")) out.push(`_submission._tcp.${abs(d)} IN SRV 0 1 ${port} ${mx}`);
  if (configured.length === 0) out.push("; (no submission listener is configured)");
  const incoming = incomingOf(config.web.incoming);
  if (incoming.length > 0) {
    out.push("; Mailbox access (web.incoming; RFC 6186 §3.2, §3.3).");
    for (const i of incoming) {
      const service = `_${i.type}${i.socketType === "SSL" ? "s" : ""}._tcp`;
      out.push(`${service}.${abs(d)} IN SRV 0 1 ${i.port} ${abs(i.host)}`);
    }
  }
  out.push("");

  out.push("; Client autoconfiguration (web:): Thunderbird asks autoconfig.DOMAIN, Outlook autodiscover.DOMAIN, on port 443.");
  if (config.web.port === undefined) out.push("; (web.port is not set: nothing answers these names yet)");
  else if (config.web.port !== 443) out.push(`; (the web listener is on port ${config.web.port}: clients connect to 443, so forward or proxy 443 to it)`);
  out.push(`autoconfig.${abs(d)} IN CNAME ${web}`);
  out.push(`autodiscover.${abs(d)} IN CNAME ${web}`);
  out.push(`_autodiscover._tcp.${abs(d)} IN SRV 0 1 443 ${web}`, "");

  out.push("; SPF (RFC 7208): a suggestion — only this domain's MX hosts send its mail; list every other sender.");
  out.push(txt(d, "v=spf1 mx -all"), "");

  out.push("; DKIM (RFC 6376): the keys in the store (postern dkim dns).");
  if (dkim.length > 0) out.push(...dkim);
  else out.push(`; no DKIM key for ${d} yet: postern dkim keygen ${d}`);
  out.push("");

  out.push(`; DMARC (RFC 7489): a suggestion — quarantine what fails; reports to a mailbox that must exist.`);
  out.push(txt(`_dmarc.${d}`, `v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@${d}`), "");

  const sts = config.web.mtaSts ?? { mode: "testing" as const, maxAgeSec: 604_800 };
  const policy = mtaStsPolicy([config.hostname], sts);
  out.push("; MTA-STS (RFC 8461): senders must use TLS with a valid certificate to reach the MX.");
  out.push(txt(`_mta-sts.${d}`, `v=STSv1; id=${mtaStsPolicyId(policy)}`));
  out.push(`mta-sts.${abs(d)} IN CNAME ${web}`);
  out.push(
    config.web.mtaSts
      ? `; postern serves this policy (web.mtaSts) at https://mta-sts.${d}/.well-known/mta-sts.txt (port 443, a certificate naming mta-sts.${d}):`
      : `; serve this policy at https://mta-sts.${d}/.well-known/mta-sts.txt (or set web.mtaSts and postern serves it)` +
          "; mode testing is a suggestion, enforce once the TLS-RPT reports are clean:",
  );
  for (const line of policy.split("\r\n").filter(Boolean)) out.push(`;   ${line}`);
  out.push("");

  out.push("; TLS-RPT (RFC 8460): where senders report TLS failures; the mailbox must exist.");
  out.push(txt(`_smtp._tls.${d}`, `v=TLSRPTv1; rua=mailto:tlsrpt@${d}`));
  return out;
}

export function dnsCommand(domain: string, opts: { config?: string }): void {
  const { config } = commandConfig(opts.config);
  const d = domain.toLowerCase().replace(/\.$/, "");
  const keys = config.domains.some((x) => x.toLowerCase() === d) ? publishedKeys(listKeys(dkimKeysDir(config), d), config.dkim.retiredGraceDays) : [];
  const lines = dnsRecords(
    config,
    domain,
    keys.map((k) => zoneLine(k.domain, k.selector, k.publicKeyDnsValue)),
  );
  process.stdout.write(`${lines.join("\n")}\n`);
}
