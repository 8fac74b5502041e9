/**
 * `postern dkim keygen|dns|rotate|activate|list`: the DKIM key store (src/dkim/keys.ts). The
 * running server reads the store for every message, so a key made or activated here signs from
 * the next message on, without a restart.
 *
 * Rotation: `rotate` makes the next selectors as "pending" (listed by `dns`, never signing);
 * after publishing them, `activate DOMAIN SELECTOR` (or `activate DOMAIN --check-dns`, which
 * activates the pending keys the configured resolvers already return) switches signing over and
 * retires the old keys, which `dns` keeps listing for dkim.retiredGraceDays.
 */
import { promises as dns } from "node:dns";
import { existsSync, statSync } from "node:fs";
import {
  type DkimAlgorithm,
  type StoredKey,
  activateKey,
  checkDomain,
  dkimKeysDir,
  generateKey,
  listDomains,
  listKeys,
  publishedKeys,
  zoneLine,
} from "../dkim/keys.js";
import type { Config } from "../config/schema.js";
import { announce, commandConfig } from "./config-source.js";

interface CommonOptions {
  config?: string;
}

const out = (line: string): void => void process.stdout.write(`${line}\n`);
const note = (line: string): void => void process.stderr.write(`${line}\n`);

/** Run as root, new files belong to whoever owns dataDir (the server after its privilege drop). */
function ownerFor(config: Config): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0 || !existsSync(config.dataDir)) return undefined;
  const st = statSync(config.dataDir);
  return st.uid === 0 ? undefined : { uid: st.uid, gid: st.gid };
}

function parseAlgorithms(value: string | undefined): DkimAlgorithm[] {
  if (value === undefined) return ["ed25519", "rsa"];
  const v = value.toLowerCase();
  if (v === "ed25519" || v === "rsa") return [v];
  throw new Error(`--algorithm must be ed25519 or rsa, not ${JSON.stringify(value)}`);
}

/** `<yyyymm>e` / `<yyyymm>r`, with a counter when that one exists already (two rotations in a month). */
function nextSelector(existing: StoredKey[], algorithm: DkimAlgorithm, now: Date): string {
  const base = `${now.getUTCFullYear()}${String(now.getUTCMonth() + 1).padStart(2, "0")}${algorithm === "ed25519" ? "e" : "r"}`;
  const taken = new Set(existing.map((k) => k.selector));
  if (!taken.has(base)) return base;
  for (let n = 2; ; n++) if (!taken.has(`${base}${n}`)) return `${base}${n}`;
}

function printRecords(keys: StoredKey[]): void {
  for (const k of keys) out(zoneLine(k.domain, k.selector, k.publicKeyDnsValue));
}

export function dkimKeygen(domain: string, opts: CommonOptions & { selector?: string; algorithm?: string }): void {
  const resolved = commandConfig(opts.config);
  announce(resolved);
  const { config } = resolved;
  const d = checkDomain(domain);
  const algorithms = parseAlgorithms(opts.algorithm);
  if (opts.selector !== undefined && algorithms.length > 1) throw new Error("--selector names one key: give --algorithm ed25519 or --algorithm rsa with it");
  const dir = dkimKeysDir(config);
  const now = new Date();
  const made: StoredKey[] = [];
  for (const algorithm of algorithms) {
    const existing = listKeys(dir, d);
    const selector = opts.selector ?? nextSelector(existing, algorithm, now);
    // The first key of an algorithm signs at once; another waits for `activate` (it is not published yet).
    const state = existing.some((k) => k.state === "active" && k.algorithm === algorithm) ? "pending" : "active";
    made.push(generateKey(dir, d, selector, algorithm, { state, now, owner: ownerFor(config) }));
  }
  for (const k of made) note(`postern: ${k.algorithm} key ${k.selector} for ${d} (${k.state})`);
  if (!config.domains.some((x) => x.toLowerCase() === d)) note(`postern: note: ${d} is not in domains; its mail is signed when a login may use it in From:`);
  note("postern: publish these records (also printed by `postern dkim dns`):");
  printRecords(made);
  if (made.some((k) => k.state === "pending")) note(`postern: then: postern dkim activate ${d} --check-dns`);
}

export function dkimDns(domain: string, opts: CommonOptions): void {
  const { config } = commandConfig(opts.config);
  const keys = publishedKeys(listKeys(dkimKeysDir(config), domain), config.dkim.retiredGraceDays);
  if (keys.length === 0) throw new Error(`no DKIM keys for ${checkDomain(domain)}: postern dkim keygen ${domain}`);
  printRecords(keys);
}

export function dkimList(domain: string | undefined, opts: CommonOptions & { json?: boolean }): void {
  const { config } = commandConfig(opts.config);
  const dir = dkimKeysDir(config);
  const keys = (domain === undefined ? listDomains(dir) : [checkDomain(domain)]).flatMap((d) => listKeys(dir, d));
  if (opts.json) {
    out(JSON.stringify(keys, null, 2));
    return;
  }
  for (const k of keys) {
    const dates = [`created ${k.created}`, k.activated && `activated ${k.activated}`, k.retired && `retired ${k.retired}`].filter(Boolean).join(", ");
    out(`${k.domain} ${k.selector} ${k.algorithm} ${k.state} (${dates})`);
  }
}

export function dkimRotate(domain: string, opts: CommonOptions & { algorithm?: string }): void {
  const resolved = commandConfig(opts.config);
  announce(resolved);
  const { config } = resolved;
  const d = checkDomain(domain);
  const dir = dkimKeysDir(config);
  const existing = listKeys(dir, d);
  const active = [...new Set(existing.filter((k) => k.state === "active").map((k) => k.algorithm))];
  const algorithms = opts.algorithm !== undefined ? parseAlgorithms(opts.algorithm) : active.length > 0 ? active : parseAlgorithms(undefined);
  const now = new Date();
  const made: StoredKey[] = [];
  for (const algorithm of algorithms) {
    const selector = nextSelector([...existing, ...made], algorithm, now);
    made.push(generateKey(dir, d, selector, algorithm, { state: "pending", now, owner: ownerFor(config) }));
  }
  note(`postern: new pending key(s) for ${d}: ${made.map((k) => k.selector).join(", ")}; the current keys keep signing.`);
  note("postern: publish these records, then `postern dkim activate " + d + " --check-dns` (or name the selector):");
  printRecords(made);
}

/** The TXT value at SELECTOR._domainkey.DOMAIN through the configured resolvers ("" when none). */
async function publishedValues(config: Config, name: string): Promise<string[]> {
  const resolver = new dns.Resolver({ timeout: config.dns.timeoutMs, tries: 2 });
  if (config.dns.servers.length > 0) resolver.setServers(config.dns.servers);
  try {
    return (await resolver.resolveTxt(name)).map((parts) => parts.join(""));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOTFOUND" || code === "ENODATA") return [];
    throw new Error(`TXT lookup of ${name} failed: ${code ?? String(err)}`);
  }
}

/** p= of a record, white space removed (RFC 6376 §3.6.1). */
const pOf = (value: string) => /(?:^|;)\s*p\s*=([^;]*)/i.exec(value)?.[1]?.replace(/\s+/g, "") ?? null;

export async function dkimActivate(domain: string, selector: string | undefined, opts: CommonOptions & { checkDns?: boolean }): Promise<void> {
  const resolved = commandConfig(opts.config);
  announce(resolved);
  const { config } = resolved;
  const d = checkDomain(domain);
  const dir = dkimKeysDir(config);
  const keys = listKeys(dir, d);
  let targets = selector !== undefined ? keys.filter((k) => k.selector === selector) : keys.filter((k) => k.state === "pending");
  if (selector !== undefined && targets.length === 0) throw new Error(`no key ${selector} for ${d} (postern dkim list ${d})`);
  if (targets.length === 0) throw new Error(`no pending key for ${d}: postern dkim rotate ${d} makes one`);
  if (selector === undefined && !opts.checkDns) throw new Error("name the selector to activate, or give --check-dns to activate the pending keys found in DNS");
  if (opts.checkDns) {
    const found: StoredKey[] = [];
    for (const k of targets) {
      const name = `${k.selector}._domainkey.${d}`;
      const values = await publishedValues(config, name);
      if (values.some((v) => pOf(v) === pOf(k.publicKeyDnsValue))) found.push(k);
      else note(`postern: ${name}: ${values.length === 0 ? "not published yet" : "published with another key"}; ${k.selector} stays ${k.state}`);
    }
    targets = found;
    if (targets.length === 0)
      throw new Error("no key activated: publish the records `postern dkim dns " + d + "` prints, and try again once DNS answers with them");
  }
  for (const k of targets) {
    const retired = activateKey(dir, d, k.selector, new Date(), ownerFor(config));
    note(
      `postern: ${d}: ${k.selector} (${k.algorithm}) signs now` +
        (retired.length > 0 ? `; retired ${retired.map((r) => r.selector).join(", ")} (listed by \`dkim dns\` for ${config.dkim.retiredGraceDays} days)` : ""),
    );
  }
}
