/** `postern check HOST[:PORT]`: audit an SMTP server; `postern check DOMAIN --dns`: its DNS. Exit 2 when any item FAILs. */
import { existsSync, readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { LocalDkimKey } from "../check/dns-dkim.js";
import { checkResolver } from "../check/dns-lookup.js";
import type { MtaStsCheckOptions } from "../check/dns-mtasts.js";
import { runDnsCheck } from "../check/dns.js";
import { runCheck } from "../check/run.js";
import type { CheckItem, CheckTarget } from "../check/types.js";
import { isListenerMode, LISTENER_MODES } from "../base/listener-mode.js";
import type { Config } from "../config/schema.js";
import { dkimKeysDir, listKeys, publishedKeys } from "../dkim/keys.js";
import { commandConfig, configPathOf } from "./config-source.js";
import { readPassword } from "./secret-input.js";

export interface CheckOptions {
  json?: boolean;
  mode?: string;
  domain?: string;
  relayTo: string;
  ehlo: string;
  servername?: string;
  ca?: string;
  submissionsPort?: string;
  user?: string;
  passwordStdin?: boolean;
  timeout: string;
  /** The argument is a DOMAIN: check its MX, SPF, DKIM and DMARC records instead of a server. */
  dns?: boolean;
  ip?: string[];
  dnsServer?: string[];
  selector?: string[];
  config?: string;
}

export async function checkTarget(hostPort: string, o: CheckOptions): Promise<CheckTarget> {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s]+))(?::(\d{1,5}))?$/.exec(hostPort);
  if (!m) throw new Error(`expected HOST[:PORT], got ${JSON.stringify(hostPort)}`);
  const host = m[1] ?? m[2]!;
  const port = m[3] ? Number(m[3]) : 25;
  const mode = o.mode ?? (port === 465 ? "submissions" : port === 587 ? "submission" : "mta");
  if (!isListenerMode(mode)) throw new Error(`--mode: expected one of ${LISTENER_MODES.join(", ")}`);
  if (!/^[^@\s<>]+@[^@\s<>]+$/.test(o.relayTo)) throw new Error("--relay-to must be local@domain");
  let login: CheckTarget["login"];
  if (o.user) {
    const env = process.env.POSTERN_PASSWORD;
    const password = env ? env : await readPassword({ fromStdin: o.passwordStdin === true, prompt: `Password for ${o.user}: ` });
    // No terminal and empty stdin (cron, CI): never try a login with an empty password.
    if (password === "") throw new Error(`--user ${o.user}: no password; set $POSTERN_PASSWORD or pipe it with --password-stdin`);
    login = { username: o.user, password };
  }
  const submissionsPort = o.submissionsPort ? Number(o.submissionsPort) : mode !== "submissions" && (port === 25 || port === 587) ? 465 : undefined;
  return {
    host,
    port,
    mode,
    domain: o.domain,
    relayTo: o.relayTo,
    ehlo: o.ehlo,
    servername: o.servername ?? host,
    ca: o.ca ? readFileSync(o.ca) : undefined,
    submissionsPort,
    login,
    timeoutMs: Number(o.timeout) * 1000,
  };
}

export function formatItems(items: CheckItem[]): string {
  const lines = items.map((i) => `${i.verdict.padEnd(10)} ${i.id}: ${i.reason}${i.fix ? `\n           fix: ${i.fix}` : ""}`);
  const count = (v: string) => items.filter((i) => i.verdict === v).length;
  lines.push(`\n${count("PASS")} passed, ${count("WARN")} warnings, ${count("FAIL")} failed, ${count("NOT TESTED")} not tested`);
  return lines.join("\n") + "\n";
}

export async function checkCommand(hostPort: string, o: CheckOptions): Promise<void> {
  if (o.dns) return dnsCheckCommand(hostPort, o);
  const target = await checkTarget(hostPort, o);
  const items = await runCheck(target);
  const failed = items.some((i) => i.verdict === "FAIL");
  if (o.json) {
    process.stdout.write(JSON.stringify({ target: `${target.host}:${target.port}`, mode: target.mode, ok: !failed, items }, null, 2) + "\n");
  } else process.stdout.write(formatItems(items));
  process.exitCode = failed ? 2 : 0;
}

/**
 * The configuration for --dns, when there is one: --config, else $POSTERN_CONFIG or the default
 * file if it exists. Without it the check still runs (system resolvers, no local keys to compare).
 */
function dnsCheckConfig(option: string | undefined): Config | undefined {
  if (option) return commandConfig(option).config;
  const { path } = configPathOf(undefined);
  return existsSync(path) ? commandConfig(path).config : undefined;
}

/** The key store's keys for the domain, as the DNS check compares them (the store is the server's: mode 0700). */
function localDkimKeys(config: Config, domain: string): LocalDkimKey[] | { unreadable: string } {
  try {
    // The keys `postern dkim dns` lists: retired ones only within their grace period.
    return publishedKeys(listKeys(dkimKeysDir(config), domain), config.dkim.retiredGraceDays).map((k) => ({
      selector: k.selector,
      algorithm: k.algorithm,
      dnsValue: k.publicKeyDnsValue,
      state: k.state,
    }));
  } catch (err) {
    return { unreadable: (err as Error).message };
  }
}

/** The MTA-STS policy fetch as delivery does it: --ca, else outbound.mtaSts.caFile / outbound.caFile, else the system's CAs. */
function mtaStsCheckOptions(config: Config | undefined, o: CheckOptions): MtaStsCheckOptions {
  const caFile = o.ca ?? config?.outbound.mtaSts.caFile ?? config?.outbound.caFile;
  return {
    timeoutMs: Number(o.timeout) * 1000,
    ...(config ? { httpsPort: config.outbound.mtaSts.httpsPort } : {}),
    ...(caFile ? { ca: readFileSync(caFile) } : {}),
  };
}

async function dnsCheckCommand(domainArg: string, o: CheckOptions): Promise<void> {
  const domain = domainArg.replace(/\.$/, "").toLowerCase();
  if (!/^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/.test(domain))
    throw new Error(`--dns: expected a domain, got ${JSON.stringify(domainArg)}`);
  const config = dnsCheckConfig(o.config);
  const ips = o.ip ?? config?.dns.ownAddresses ?? [];
  for (const ip of ips) if (!isIP(ip)) throw new Error(`--ip: ${JSON.stringify(ip)} is not an IP address`);
  const dnsServers = o.dnsServer ?? config?.dns.servers ?? [];
  const resolver = checkResolver(dnsServers, Number(o.timeout) * 1000);
  const items = await runDnsCheck({
    domain,
    resolver,
    ips,
    localKeys: config ? localDkimKeys(config, domain) : undefined,
    selectors: o.selector ?? [],
    dane: { mode: config?.dns.dnssec ?? "off", servers: dnsServers, timeoutMs: Number(o.timeout) * 1000, ehlo: o.ehlo },
    mtaSts: mtaStsCheckOptions(config, o),
  });
  const failed = items.some((i) => i.verdict === "FAIL");
  if (o.json) process.stdout.write(JSON.stringify({ target: domain, mode: "dns", ok: !failed, items }, null, 2) + "\n");
  else process.stdout.write(formatItems(items));
  process.exitCode = failed ? 2 : 0;
}
