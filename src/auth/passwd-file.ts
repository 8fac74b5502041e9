/**
 * Dovecot passwd-file backend: `user:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields`, one user
 * a line, `#` comments. Reloaded when the file changes (fs.watch on its folder, plus a stat check
 * before each lookup in case an event was missed), without a restart; a file that fails to load
 * keeps the previous users.
 *
 * Unknown users are verified against the first entry's hash (the cost of a real user's scheme;
 * the result is discarded), so their answer takes as long as a known user's (SECURITY.md rule 14).
 */
import { readFileSync, statSync, watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import { cramMd5SecretOf, parseStoredPassword, scramSecretOf, verifyStoredPassword, type StoredPassword } from "./dovecot-schemes.js";
import type { AuthLog, Authenticator, UserInfo } from "./types.js";
import type { CramMd5Secret, ScramCredentials, VerifyResult } from "../sasl/types.js";

interface Entry {
  user: string;
  password: StoredPassword;
}

export interface PasswdFileOptions {
  path: string;
  log?: AuthLog;
}

/** ASCII case folding, like the SQLite store's COLLATE NOCASE. */
const keyOf = (user: string) => user.trim().replace(/[A-Z]/g, (c) => c.toLowerCase());

export function parsePasswdFile(text: string): { entries: Map<string, Entry>; skipped: number[] } {
  const entries = new Map<string, Entry>();
  const skipped: number[] = [];
  text.split("\n").forEach((raw, index) => {
    const line = raw.replace(/\r$/, "");
    if (line.trim() === "" || line.trimStart().startsWith("#")) return;
    const fields = line.split(":");
    const user = fields[0] ?? "";
    const password = fields[1] !== undefined ? parseStoredPassword(fields[1]) : null;
    if (user === "" || password === null) {
      skipped.push(index + 1);
      return;
    }
    if (!entries.has(keyOf(user))) entries.set(keyOf(user), { user, password });
  });
  return { entries, skipped };
}

export class PasswdFileStore implements Authenticator {
  private entries = new Map<string, Entry>();
  private signature = "";
  private watcher: FSWatcher | null = null;
  private reloadTimer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: PasswdFileOptions) {
    this.load(true);
    try {
      // The folder, not the file: editors and `mv` replace the file (a new inode).
      this.watcher = watch(dirname(opts.path), (_event, name) => {
        if (name !== null && name !== basename(opts.path)) return;
        if (this.reloadTimer) clearTimeout(this.reloadTimer);
        this.reloadTimer = setTimeout(() => this.reloadIfChanged(), 50);
        this.reloadTimer.unref();
      });
      this.watcher.unref();
    } catch (err) {
      opts.log?.warn({ event: "passwd-file-watch-failed", path: opts.path, err: String(err) }, "cannot watch passwd-file; changes are noticed at the next login");
    }
  }

  get size(): number {
    return this.entries.size;
  }

  private statSignature(): string {
    try {
      const s = statSync(this.opts.path);
      return `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch {
      return "missing";
    }
  }

  private reloadIfChanged(): void {
    if (this.statSignature() !== this.signature) this.load(false);
  }

  private load(initial: boolean): void {
    const signature = this.statSignature();
    try {
      const { entries, skipped } = parsePasswdFile(readFileSync(this.opts.path, "utf8"));
      this.entries = entries;
      this.signature = signature;
      this.opts.log?.info({ event: "passwd-file-loaded", path: this.opts.path, users: entries.size, skippedLines: skipped }, "passwd-file loaded");
    } catch (err) {
      if (initial) throw new Error(`cannot read passwd-file ${this.opts.path}: ${String(err)}`);
      this.signature = signature;
      this.opts.log?.warn({ event: "passwd-file-error", path: this.opts.path, err: String(err) }, "passwd-file reload failed; keeping the previous users");
    }
  }

  private find(user: string): Entry | undefined {
    this.reloadIfChanged();
    return this.entries.get(keyOf(user));
  }

  async verifyPassword(user: string, password: string): Promise<VerifyResult> {
    try {
      const entry = user === "" || password === "" ? undefined : this.find(user);
      if (!entry) {
        const decoy = this.entries.values().next().value as Entry | undefined;
        if (decoy) await verifyStoredPassword(password, decoy.password).catch(() => false);
        return { ok: false, reason: "unknown-user" };
      }
      return (await verifyStoredPassword(password, entry.password)) ? { ok: true, user: entry.user } : { ok: false, reason: "bad-password" };
    } catch (err) {
      return { ok: false, reason: "backend-error", detail: `passwd-file: ${String(err)}` };
    }
  }

  async scramSha256(user: string): Promise<ScramCredentials | null> {
    const entry = this.find(user);
    return entry ? scramSecretOf(entry.password) : null;
  }

  async cramMd5(user: string): Promise<CramMd5Secret | null> {
    const entry = this.find(user);
    return entry ? cramMd5SecretOf(entry.password) : null;
  }

  async digestMd5(): Promise<Buffer | null> {
    return null;
  }

  /** CRAM-MD5 / SCRAM-SHA-256 only when some user has a secret they can work from. */
  supportedMechanisms(): string[] {
    const schemes = new Set([...this.entries.values()].map((e) => e.password.scheme));
    const out: string[] = [];
    if (schemes.has("SCRAM-SHA-256")) out.push("SCRAM-SHA-256");
    if (schemes.has("CRAM-MD5") || schemes.has("PLAIN")) out.push("CRAM-MD5");
    out.push("PLAIN", "LOGIN");
    return out;
  }

  async lookupUser(address: string): Promise<UserInfo | null> {
    const entry = this.find(address);
    return entry ? { address: entry.user, senders: [], disabled: false } : null;
  }

  close(): void {
    this.watcher?.close();
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
  }
}
