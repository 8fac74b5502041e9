/**
 * The DKIM key store: one folder per domain under the keys folder (default <dataDir>/dkim), one
 * private key per selector (`<selector>.key`, PKCS#8 PEM, mode 0600) and a small metadata file
 * beside it (`<selector>.json`: algorithm, state, dates). States:
 *   - pending: created by `postern dkim rotate`, published but not yet used to sign;
 *   - active: signs every qualifying message;
 *   - retired: no longer signs; `postern dkim dns` keeps listing it for a grace period so that
 *     mail signed just before the switch still verifies (RFC 6376 §3.6.1 has no validity dates).
 * Keys are made with node:crypto: Ed25519 (RFC 8463) and RSA-2048 (RFC 8301: at least 1024, 2048
 * recommended; 2048 still fits most DNS TXT setups).
 */
import { generateKeyPairSync, createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { normaliseDomain } from "../base/domain.js";

export type DkimAlgorithm = "ed25519" | "rsa";
export type KeyState = "pending" | "active" | "retired";

/** The metadata file's content. */
export interface KeyMeta {
  selector: string;
  algorithm: DkimAlgorithm;
  state: KeyState;
  /** ISO dates. */
  created: string;
  activated?: string;
  retired?: string;
}

/** A key as `postern dkim` and `postern check --dns` see it. */
export interface StoredKey extends KeyMeta {
  domain: string;
  /** The TXT record's value: "v=DKIM1; k=…; p=…". */
  publicKeyDnsValue: string;
}

/** What the signer needs. */
export interface SigningKey {
  domain: string;
  selector: string;
  algorithm: DkimAlgorithm;
  privateKey: KeyObject;
}

/** A domain as a folder name: only host-name characters, so it can never climb out of the store. */
export function checkDomain(domain: string): string {
  const d = normaliseDomain(domain);
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/.test(d)) throw new Error(`not a domain name: ${JSON.stringify(domain)}`);
  return d;
}

/** RFC 6376 §3.1: a selector is one or more DNS labels. */
export function checkSelector(selector: string): string {
  if (!/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(selector))
    throw new Error(`not a selector (DNS labels: letters, digits, hyphens): ${JSON.stringify(selector)}`);
  return selector;
}

/** dkim.keysDir, relative paths inside dataDir; default <dataDir>/dkim. */
export function dkimKeysDir(config: { dataDir: string; dkim?: { keysDir?: string } }): string {
  const dir = config.dkim?.keysDir;
  if (dir === undefined) return join(config.dataDir, "dkim");
  return dir.startsWith("/") ? dir : join(config.dataDir, dir);
}

/** p= of the TXT record: Ed25519 is the bare 32-byte key (RFC 8463 §4.2), RSA the SubjectPublicKeyInfo DER. */
export function publicKeyDnsValue(publicKey: KeyObject, algorithm: DkimAlgorithm): string {
  const der = publicKey.export({ type: "spki", format: "der" });
  const p = algorithm === "ed25519" ? der.subarray(der.length - 32) : der;
  return `v=DKIM1; k=${algorithm}; p=${p.toString("base64")}`;
}

/** A zone-file line; the value in quoted strings of at most 255 octets (RFC 1035 §3.3.14 character-strings). */
export function zoneLine(domain: string, selector: string, value: string): string {
  const parts: string[] = [];
  for (let i = 0; i < value.length; i += 255) parts.push(`"${value.slice(i, i + 255)}"`);
  return `${selector}._domainkey.${domain}. IN TXT ${parts.join(" ")}`;
}

const metaPath = (dir: string, domain: string, selector: string) => join(dir, domain, `${selector}.json`);
const keyPath = (dir: string, domain: string, selector: string) => join(dir, domain, `${selector}.key`);

function readMeta(dir: string, domain: string, selector: string): KeyMeta {
  const meta = JSON.parse(readFileSync(metaPath(dir, domain, selector), "utf8")) as KeyMeta;
  if (meta.algorithm !== "ed25519" && meta.algorithm !== "rsa")
    throw new Error(`${metaPath(dir, domain, selector)}: unknown algorithm ${String(meta.algorithm)}`);
  return { ...meta, selector };
}

/** Written aside and renamed: a reader never sees half a file, and the folder's mtime moves (the signer's cue). */
function writeMeta(dir: string, domain: string, meta: KeyMeta, owner?: { uid: number; gid: number }): void {
  const path = metaPath(dir, domain, meta.selector);
  writeFileSync(`${path}.tmp`, `${JSON.stringify(meta, null, 2)}\n`, { mode: 0o600 });
  if (owner) chownSync(`${path}.tmp`, owner.uid, owner.gid);
  renameSync(`${path}.tmp`, path);
}

/** Every key of a domain, oldest first; none when the domain has no folder. */
export function listKeys(keysDir: string, domain: string): StoredKey[] {
  const d = checkDomain(domain);
  let names: string[];
  try {
    names = readdirSync(join(keysDir, d));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const keys: StoredKey[] = [];
  for (const name of names) {
    if (!name.endsWith(".json")) continue;
    const meta = readMeta(keysDir, d, name.slice(0, -5));
    const privateKey = createPrivateKey(readFileSync(keyPath(keysDir, d, meta.selector)));
    keys.push({ ...meta, domain: d, publicKeyDnsValue: publicKeyDnsValue(createPublicKey(privateKey), meta.algorithm) });
  }
  return keys.sort((a, b) => a.created.localeCompare(b.created) || a.selector.localeCompare(b.selector));
}

/** The domains with a folder in the store. */
export function listDomains(keysDir: string): string[] {
  try {
    return readdirSync(keysDir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

export interface GenerateOptions {
  state: KeyState;
  now?: Date;
  /** Owner for the new files (the CLI run as root makes them the server's, as dataDir is). */
  owner?: { uid: number; gid: number };
}

/** Makes a key pair and stores it; refuses to replace an existing selector. */
export function generateKey(keysDir: string, domain: string, selector: string, algorithm: DkimAlgorithm, o: GenerateOptions): StoredKey {
  const d = checkDomain(domain);
  checkSelector(selector);
  const now = (o.now ?? new Date()).toISOString();
  mkdirSync(join(keysDir, d), { recursive: true, mode: 0o700 });
  if (o.owner) {
    chownSync(keysDir, o.owner.uid, o.owner.gid);
    chownSync(join(keysDir, d), o.owner.uid, o.owner.gid);
  }
  const pair = algorithm === "ed25519" ? generateKeyPairSync("ed25519") : generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pem = pair.privateKey.export({ type: "pkcs8", format: "pem" });
  // "wx": never overwrite a key that may be published and in use.
  writeFileSync(keyPath(keysDir, d, selector), pem, { mode: 0o600, flag: "wx" });
  chmodSync(keyPath(keysDir, d, selector), 0o600); // whatever the umask
  if (o.owner) chownSync(keyPath(keysDir, d, selector), o.owner.uid, o.owner.gid);
  const meta: KeyMeta = { selector, algorithm, state: o.state, created: now, ...(o.state === "active" ? { activated: now } : {}) };
  writeMeta(keysDir, d, meta, o.owner);
  return { ...meta, domain: d, publicKeyDnsValue: publicKeyDnsValue(pair.publicKey, algorithm) };
}

/**
 * Makes `selector` active; the domain's other active keys of the same algorithm retire (one
 * signature per algorithm). Returns the keys that retired.
 */
export function activateKey(keysDir: string, domain: string, selector: string, now = new Date(), owner?: { uid: number; gid: number }): StoredKey[] {
  const d = checkDomain(domain);
  const keys = listKeys(keysDir, d);
  const target = keys.find((k) => k.selector === selector);
  if (!target) throw new Error(`no key ${selector} for ${d}`);
  const when = now.toISOString();
  const retired = keys.filter((k) => k.selector !== selector && k.state === "active" && k.algorithm === target.algorithm);
  // The new key first: for a moment both sign, never neither.
  writeMeta(keysDir, d, { ...metaOf(target), state: "active", activated: when, retired: undefined }, owner);
  for (const k of retired) writeMeta(keysDir, d, { ...metaOf(k), state: "retired", retired: when }, owner);
  return retired;
}

function metaOf(k: StoredKey): KeyMeta {
  return { selector: k.selector, algorithm: k.algorithm, state: k.state, created: k.created, activated: k.activated, retired: k.retired };
}

/** Keys worth publishing: all but those retired longer ago than the grace period. */
export function publishedKeys(keys: StoredKey[], graceDays: number, now = new Date()): StoredKey[] {
  const cutoff = now.getTime() - graceDays * 86_400_000;
  return keys.filter((k) => k.state !== "retired" || (k.retired !== undefined && Date.parse(k.retired) >= cutoff));
}

/**
 * The signing keys of each domain, as the server reads them: the active ones, re-read when the
 * domain's folder changes (a key made or activated while the server runs signs from the next
 * message on; each write renames a file into the folder, which moves its mtime) and at least
 * every `maxAgeMs`. One stat per signed message.
 */
export class KeyStore {
  private readonly cache = new Map<string, { mtimeMs: number; loadedAt: number; keys: SigningKey[] }>();

  constructor(
    readonly keysDir: string,
    private readonly maxAgeMs = 60_000,
    private readonly clock: () => number = Date.now,
  ) {}

  /** The active keys for `domain` (already lower-cased); none for a domain without a folder. */
  signingKeys(domain: string): readonly SigningKey[] {
    if (!/^[a-z0-9.-]+$/.test(domain) || domain.includes("..")) return [];
    let mtimeMs: number;
    try {
      // Most domains have no folder: no exception for that case, it is on every message's path.
      const folder = statSync(join(this.keysDir, domain), { throwIfNoEntry: false });
      if (folder === undefined) return [];
      mtimeMs = folder.mtimeMs;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOTDIR") return [];
      throw err;
    }
    const cached = this.cache.get(domain);
    const now = this.clock();
    if (cached && cached.mtimeMs === mtimeMs && now - cached.loadedAt < this.maxAgeMs) return cached.keys;
    const keys = listKeys(this.keysDir, domain)
      .filter((k) => k.state === "active")
      .map((k) => ({
        domain,
        selector: k.selector,
        algorithm: k.algorithm,
        privateKey: createPrivateKey(readFileSync(keyPath(this.keysDir, domain, k.selector))),
      }))
      // Ed25519 first: the cheaper, stronger signature heads the message.
      .sort((a, b) => (a.algorithm === b.algorithm ? 0 : a.algorithm === "ed25519" ? -1 : 1));
    this.cache.set(domain, { mtimeMs, loadedAt: now, keys });
    return keys;
  }
}
