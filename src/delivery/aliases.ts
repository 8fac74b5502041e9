/**
 * Aliases for local domains: an alias file, catch-all per domain and +detail sub-addressing.
 *
 *   # comment
 *   postmaster: admin@example.org            bare local part: in every local domain
 *   sales@example.org: ann, bob@example.net  a bare target is in the alias's own domain
 *   @example.org: catchall@example.org       catch-all: any unknown local part of example.org
 *
 * Lookup order for local@domain (Postfix virtual_alias_maps + recipient_delimiter):
 * the full address, local+detail stripped of its detail, the bare local part (with and without
 * detail), an existing mailbox, the catch-all. Targets may themselves be aliases (depth ≤ 10).
 *
 * With store.backend postgres the cluster's aliases (src/store/pg/aliases.ts, `postern alias …`)
 * are asked first at each lookup, the file after them.
 *
 * RCPT time asks only "does it exist?" (so unknown users are refused there, RFC 5321 §3.6.2
 * avoids backscatter) and keeps the address the client gave in the envelope; delivery expands it,
 * so DSNs name the address the sender used and a changed alias file applies to queued mail.
 */
import { readFileSync, statSync } from "node:fs";
import { normaliseDomain } from "../base/domain.js";

export interface AliasOptions {
  /** Path of the alias file; undefined: no aliases (detail and mailbox lookups still apply). */
  file?: string;
  /** Sub-address separator; "" turns sub-addressing off. */
  delimiter: string;
  isLocalDomain(domain: string): boolean;
  /** The mailbox's own spelling for this address, or null (the user store). */
  mailbox(address: string): Promise<string | null>;
  /**
   * A cluster's aliases (PostgreSQL, src/store/pg/aliases.ts): the entries among these normalised
   * keys, asked at each lookup; for the same key they win over the file's.
   */
  shared?: (keys: readonly string[]) => Promise<Map<string, string[]>>;
}

/** Final targets: local mailboxes (store spelling) and addresses elsewhere (forwarding). */
export interface Expansion {
  mailboxes: string[];
  remote: string[];
}

const MAX_DEPTH = 10;

export function parseAliasFile(text: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") return;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Error(`alias file line ${i + 1}: expected "alias: target, target"`);
    const key = normaliseKey(line.slice(0, colon).trim());
    const targets = line
      .slice(colon + 1)
      .split(",")
      .map((t) => t.trim())
      .filter((t) => t !== "");
    if (targets.length === 0) throw new Error(`alias file line ${i + 1}: no targets`);
    for (const t of targets) {
      // Targets stay addresses (SECURITY rule 6): no pipes, files or includes as in /etc/aliases.
      if (!/^[^\s@|/:"<>,]+(@[A-Za-z0-9.-]+)?$/.test(t)) throw new Error(`alias file line ${i + 1}: target "${t}" is not an address`);
    }
    map.set(key, [...(map.get(key) ?? []), ...targets]);
  });
  return map;
}

/**
 * Local parts are case-sensitive in principle (RFC 5321 §2.4); aliases match without case, as Postfix
 * does. A key ends in its domain (or is a bare local part), so the domain's spelling rule fits it whole.
 */
function normaliseKey(key: string): string {
  return normaliseDomain(key);
}

function split(address: string): { local: string; domain: string } {
  const at = address.lastIndexOf("@");
  return at < 0 ? { local: address, domain: "" } : { local: address.slice(0, at), domain: address.slice(at + 1).toLowerCase() };
}

export class AliasResolver {
  private table = new Map<string, string[]>();
  private loadedMtimeMs = -1;

  constructor(private readonly opts: AliasOptions) {
    this.reloadIfChanged();
  }

  /** Re-reads the file when its mtime changed (cheap stat per lookup); a broken edit keeps the old table. */
  reloadIfChanged(): void {
    if (!this.opts.file) return;
    let mtime: number;
    try {
      mtime = statSync(this.opts.file).mtimeMs;
    } catch {
      if (this.loadedMtimeMs === -1) throw new Error(`alias file ${this.opts.file} cannot be read`);
      return;
    }
    if (mtime === this.loadedMtimeMs) return;
    const text = readFileSync(this.opts.file, "utf8");
    try {
      this.table = parseAliasFile(text);
      this.loadedMtimeMs = mtime;
    } catch (err) {
      if (this.loadedMtimeMs === -1) throw err;
    }
  }

  /** RCPT time: the address to keep in the envelope if it exists here, else null. */
  async exists(address: string): Promise<string | null> {
    const { local, domain } = split(address);
    const found = await this.step(local, domain);
    if (found === null) return null;
    // A plain mailbox keeps the store's spelling (SECURITY rule 6); aliases keep what was given.
    return "mailbox" in found && found.exact ? found.mailbox : `${local}@${domain}`;
  }

  /** Delivery time: the final targets, or null when the address is unknown (5.1.1). */
  async expand(address: string): Promise<Expansion | null> {
    const out: Expansion = { mailboxes: [], remote: [] };
    const seen = new Set<string>();
    const walk = async (addr: string, depth: number, mailboxOnly: boolean): Promise<boolean> => {
      const { local, domain } = split(addr);
      if (!this.opts.isLocalDomain(domain)) {
        if (!out.remote.includes(addr)) out.remote.push(addr);
        return true;
      }
      const found = mailboxOnly ? await this.mailboxStep(local, domain) : await this.step(local, domain);
      if (found === null) return false;
      if ("mailbox" in found) {
        if (!out.mailboxes.includes(found.mailbox)) out.mailboxes.push(found.mailbox);
        return true;
      }
      if (depth >= MAX_DEPTH) throw new Error(`alias expansion of ${address} deeper than ${MAX_DEPTH}`);
      seen.add(addr.toLowerCase());
      let any = false;
      for (const t of found.targets) {
        // "john: john, john@backup.example": a target naming an alias already expanded means its mailbox.
        const again = seen.has(t.toLowerCase());
        if (await walk(t, depth + 1, again)) any = true;
      }
      return any;
    };
    return (await walk(address, 0, false)) ? out : null;
  }

  /** One step: alias targets, else a mailbox (also for the detail-stripped address), else the catch-all. */
  private async step(local: string, domain: string): Promise<{ targets: string[] } | { mailbox: string; exact: boolean } | null> {
    this.reloadIfChanged();
    const base = this.stripDetail(local);
    const qualify = (targets: string[]) => targets.map((t) => (t.includes("@") ? t : `${t}@${domain}`));
    const keys = [`${local}@${domain}`, `${base}@${domain}`, local, base].map(normaliseKey);
    const catchAllKey = `@${domain}`;
    const shared = this.opts.shared ? await this.opts.shared([...new Set([...keys, catchAllKey])]) : undefined;
    const entry = (key: string) => shared?.get(key) ?? this.table.get(key);
    for (const key of keys) {
      const hit = entry(key);
      if (hit) return { targets: qualify(hit) };
    }
    const box = await this.mailboxStep(local, domain);
    if (box) return box;
    const catchAll = entry(catchAllKey);
    return catchAll ? { targets: qualify(catchAll) } : null;
  }

  private async mailboxStep(local: string, domain: string): Promise<{ mailbox: string; exact: boolean } | null> {
    const direct = await this.opts.mailbox(`${local}@${domain}`);
    if (direct !== null) return { mailbox: direct, exact: true };
    const base = this.stripDetail(local);
    if (base === local) return null;
    const viaBase = await this.opts.mailbox(`${base}@${domain}`);
    return viaBase === null ? null : { mailbox: viaBase, exact: false };
  }

  /** RFC 5233 sub-addressing: "john+lists" → "john" (not for a local part that starts with it). */
  private stripDetail(local: string): string {
    const d = this.opts.delimiter;
    if (!d) return local;
    const i = local.indexOf(d);
    return i > 0 ? local.slice(0, i) : local;
  }
}
