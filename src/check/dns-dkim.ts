/**
 * The DKIM items of `postern check --dns` (RFC 6376 §3.6): for each local key, the TXT record at
 * SELECTOR._domainkey.DOMAIN exists, is one record, and carries the same public key. DNS cannot
 * list the selectors under _domainkey, so the local keys (and --selector names) say where to look.
 */
import { createHash } from "node:crypto";
import { dnsError, type Resolver, txtRecords } from "./dns-lookup.js";
import { type CheckItem, item } from "./types.js";

/** What the check needs of a local key: the key store's DNS value ("v=DKIM1; k=…; p=…"). */
export interface LocalDkimKey {
  selector: string;
  algorithm: string;
  dnsValue: string;
  /** The key store's state; absent means active. Only an active key's absence from DNS is a FAIL. */
  state?: "pending" | "active" | "retired";
}

/** How the record at SELECTOR._domainkey.DOMAIN stands against a local key. */
export type DkimRecordStatus =
  | { status: "match"; name: string; testing: boolean }
  | { status: "differs"; name: string; published: { k: string; p: string } }
  | { status: "missing" | "several" | "revoked"; name: string }
  | { status: "error"; name: string; error: string };

/** tag=value list (RFC 6376 §3.2): names lower-cased, folding whitespace removed from values. */
export function dkimTags(record: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const part of record.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    tags.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).replace(/\s+/g, ""));
  }
  return tags;
}

/** The key a record publishes: k= (default rsa, §3.6.1) and p=. */
const keyOf = (tags: Map<string, string>) => ({ k: (tags.get("k") || "rsa").toLowerCase(), p: tags.get("p") ?? "" });

/** RSA keys share their first and last characters (DER header, exponent): a fingerprint tells two apart. */
const short = (p: string) => (p.length > 24 ? `${p.slice(0, 8)}… (SHA-256 ${createHash("sha256").update(p).digest("hex").slice(0, 12)})` : p);

const FIX_DNS = (domain: string) => `publish the record \`postern dkim dns ${domain}\` prints`;

async function published(resolver: Resolver, domain: string, selector: string): Promise<{ name: string; records: string[] } | { name: string; error: string }> {
  const name = `${selector}._domainkey.${domain}`;
  try {
    // A name may hold other TXT records; the key record is the one with p= (v=DKIM1 optional).
    return { name, records: (await txtRecords(resolver, name)).filter((r) => /(^|;)\s*p\s*=/i.test(r)) };
  } catch (err) {
    return { name, error: dnsError(err) };
  }
}

/** Is this local key published as it is? (`postern dkim rotate` may ask before activating a key.) */
export async function dkimRecordStatus(resolver: Resolver, domain: string, key: LocalDkimKey): Promise<DkimRecordStatus> {
  const found = await published(resolver, domain, key.selector);
  const { name } = found;
  if ("error" in found) return { status: "error", name, error: found.error };
  if (found.records.length === 0) return { status: "missing", name };
  if (found.records.length > 1) return { status: "several", name };
  const tags = dkimTags(found.records[0]!);
  const there = keyOf(tags);
  const local = keyOf(dkimTags(key.dnsValue));
  if (there.p === "") return { status: "revoked", name };
  if (there.k !== local.k || there.p !== local.p) return { status: "differs", name, published: there };
  return { status: "match", name, testing: (tags.get("t") ?? "").split(":").includes("y") };
}

function keyItem(domain: string, key: LocalDkimKey, r: DkimRecordStatus): CheckItem {
  const id = `dkim (${key.selector})`;
  const state = key.state ?? "active";
  const what = `the local ${key.algorithm} key${state === "active" ? "" : ` (${state})`}`;
  switch (r.status) {
    case "error":
      return item(id, "FAIL", `TXT lookup of ${r.name} failed: ${r.error}`);
    case "missing":
      if (state === "pending") return item(id, "WARN", `${r.name}: not published yet; ${what} signs only once it is`, FIX_DNS(domain));
      if (state === "retired") return item(id, "INFO", `${r.name}: not published (${what})`);
      return item(id, "FAIL", `${r.name}: not published; verifiers cannot check the ${key.algorithm} signatures`, FIX_DNS(domain));
    case "several":
      return item(id, "FAIL", `${r.name}: several key records; verifiers may pick either`, FIX_DNS(domain));
    case "revoked":
      return item(id, state === "retired" ? "INFO" : "FAIL", `${r.name}: the key is revoked (empty p=)`, FIX_DNS(domain));
    case "differs": {
      const local = keyOf(dkimTags(key.dnsValue));
      return item(
        id,
        state === "retired" ? "WARN" : "FAIL",
        `${r.name}: published k=${r.published.k} p=${short(r.published.p)} differs from ${what} k=${local.k} p=${short(local.p)}`,
        FIX_DNS(domain),
      );
    }
    case "match":
      return r.testing
        ? item(id, "WARN", `${r.name}: matches ${what}, but t=y (testing) asks verifiers to ignore failures`, "remove t=y")
        : item(id, "PASS", `${r.name}: matches ${what}`);
  }
}

export async function dkimItems(
  resolver: Resolver,
  domain: string,
  keysOrWhyNot: LocalDkimKey[] | undefined | { unreadable: string },
  selectors: string[],
): Promise<CheckItem[]> {
  const items: CheckItem[] = [];
  const localKeys = Array.isArray(keysOrWhyNot) ? keysOrWhyNot : undefined;
  if (keysOrWhyNot && !Array.isArray(keysOrWhyNot)) {
    items.push(item("dkim", "NOT TESTED", `cannot read the local DKIM keys: ${keysOrWhyNot.unreadable}`, "run as root or the server's user"));
  } else if (!localKeys || localKeys.length === 0) {
    items.push(
      item(
        "dkim",
        localKeys ? "WARN" : "NOT TESTED",
        localKeys ? `no local DKIM key for ${domain}: mail from it goes out unsigned` : "no configuration read: local DKIM keys not compared",
        localKeys ? `postern dkim keygen ${domain} --config FILE, then publish what \`postern dkim dns ${domain}\` prints` : "give --config FILE",
      ),
    );
  }
  for (const key of localKeys ?? []) items.push(keyItem(domain, key, await dkimRecordStatus(resolver, domain, key)));
  // Selectors named on the command line that are not local keys: published and well-formed?
  const localSelectors = new Set((localKeys ?? []).map((k) => k.selector));
  for (const selector of selectors.filter((s) => !localSelectors.has(s))) {
    const id = `dkim (${selector})`;
    const found = await published(resolver, domain, selector);
    if ("error" in found) items.push(item(id, "FAIL", `TXT lookup of ${found.name} failed: ${found.error}`));
    else if (found.records.length !== 1)
      items.push(item(id, "FAIL", `${found.name}: ${found.records.length === 0 ? "no key record" : `${found.records.length} key records`}`));
    else {
      const there = keyOf(dkimTags(found.records[0]!));
      items.push(
        there.p === ""
          ? item(id, "INFO", `${found.name}: revoked (empty p=)`)
          : item(id, "INFO", `${found.name}: k=${there.k} p=${short(there.p)} (no local key with this selector)`),
      );
    }
  }
  return items;
}
