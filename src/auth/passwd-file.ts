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
import { cramMd5SecretOf, parseStoredPassword, scramSecretOf, unsupportedReason, verifyStoredPassword, type StoredPassword } from "./dovecot-schemes.js";
import type { Authenticator, UserInfo } from "./types.js";
import { SCRAM_DEFAULT_ITERATIONS, SCRAM_SALT_BYTES } from "../sasl/secrets.js";
import type { CramMd5Secret, CredentialKind, ScramCredentials, ScramShape, VerifyResult } from "../sasl/types.js";
import type { InfoWarnLog } from "../base/log.js";

interface Entry {
  user: string;
  password: StoredPassword;
  line: number;
}

/** A line that gave no user, and why (logged as a WARN with its number; never the hash itself). */
export interface SkippedLine {
  line: number;
  reason: string;
}

export interface PasswdFileOptions {
  path: string;
  log?: InfoWarnLog;
}

/** ASCII case folding, like the SQLite store's COLLATE NOCASE. */
const keyOf = (user: string) => user.trim().replace(/[A-Z]/g, (c) => c.toLowerCase());

export function parsePasswdFile(text: string): { entries: Map<string, Entry>; skipped: SkippedLine[] } {
  const entries = new Map<string, Entry>();
  const skipped: SkippedLine[] = [];
  for (const [index, raw] of text.split("\n").entries()) {
    const line = raw.replace(/\r$/, "");
    const number = index + 1;
    if (line.trim() === "" || line.trimStart().startsWith("#")) continue;
    const fields = line.split(":");
    const user = fields[0] ?? "";
    if (fields.length < 2) {
      skipped.push({ line: number, reason: "malformed line: no ':' (expected user:{SCHEME}hash:uid:gid:gecos:home:shell:extra)" });
      continue;
    }
    if (user === "") {
      skipped.push({ line: number, reason: "malformed line: no user name before the first ':'" });
      continue;
    }
    const password = parseStoredPassword(fields[1]!);
    if (password === null) {
      skipped.push({ line: number, reason: unsupportedReason(fields[1]!) });
      continue;
    }
    const earlier = entries.get(keyOf(user));
    if (earlier) {
      skipped.push({ line: number, reason: `duplicate user ${user}: line ${earlier.line} is used` });
      continue;
    }
    entries.set(keyOf(user), { user, password, line: number });
  }
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
      opts.log?.warn(
        { event: "passwd-file-watch-failed", path: opts.path, err: String(err) },
        "cannot watch passwd-file; changes are noticed at the next login",
      );
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
      for (const s of skipped) {
        this.opts.log?.warn(
          { event: "passwd-file-line-skipped", path: this.opts.path, line: s.line, reason: s.reason },
          `passwd-file ${this.opts.path} line ${s.line} skipped: ${s.reason}`,
        );
      }
      this.opts.log?.info(
        { event: "passwd-file-loaded", path: this.opts.path, users: entries.size, skippedLines: skipped.map((s) => s.line) },
        "passwd-file loaded",
      );
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
    return entry ? this.usable(entry, "SCRAM-SHA-256", scramSecretOf(entry.password)) : null;
  }

  async cramMd5(user: string): Promise<CramMd5Secret | null> {
    const entry = this.find(user);
    return entry ? this.usable(entry, "CRAM-MD5", cramMd5SecretOf(entry.password)) : null;
  }

  /**
   * A known user whose stored scheme cannot serve this mechanism fails like an unknown one (the
   * client learns nothing); the admin's log says what really happened and what to do.
   */
  private usable<T>(entry: Entry, mechanism: string, secret: T | null): T | null {
    if (secret === null) {
      const needs = mechanism === "CRAM-MD5" ? "{CRAM-MD5} or {PLAIN}" : "{SCRAM-SHA-256}";
      this.opts.log?.warn(
        { event: "auth-no-usable-secret", user: entry.user, mechanism, scheme: entry.password.scheme, path: this.opts.path, line: entry.line },
        `${entry.user} has a ${entry.password.scheme} password, which ${mechanism} cannot use (it needs ${needs}); the client gets 535 as for a wrong password: PLAIN/LOGIN work`,
      );
    }
    return secret;
  }

  hasUser(user: string): boolean {
    return this.find(user) !== undefined;
  }

  async digestMd5(): Promise<Buffer | null> {
    return null;
  }

  /** What lookups match on (trimmed, ASCII case folded). */
  loginKey(user: string): string {
    return keyOf(user);
  }

  /** The first SCRAM entry's iteration count and salt length, so an unknown login shows a real user's. */
  scramShape(): ScramShape {
    this.reloadIfChanged();
    for (const entry of this.entries.values()) {
      if (entry.password.scheme !== "SCRAM-SHA-256") continue;
      try {
        const scram = scramSecretOf(entry.password);
        if (scram) return { iterations: scram.iterations, saltBytes: scram.salt.length };
      } catch {
        // a malformed entry: look at the next
      }
    }
    return { iterations: SCRAM_DEFAULT_ITERATIONS, saltBytes: SCRAM_SALT_BYTES };
  }

  /** SCRAM / CRAM-MD5 secrets only when some user has a stored password they can come from. */
  credentials(): readonly CredentialKind[] {
    const schemes = new Set([...this.entries.values()].map((e) => e.password.scheme));
    const out: CredentialKind[] = [];
    if (schemes.has("SCRAM-SHA-256")) out.push("scram-sha-256");
    if (schemes.has("CRAM-MD5") || schemes.has("PLAIN")) out.push("cram-md5");
    out.push("password");
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
