/**
 * The default user store: one SQLite file (better-sqlite3, WAL) holding, per user, the scrypt hash
 * and the per-mechanism secrets — never a plaintext password.
 *
 * Login names are full addresses only ("john@example.org"; a bare "john" is refused: with several
 * domains it would be ambiguous, and guessing is an oracle). Addresses are normalised: trimmed,
 * domain lower-cased, local part kept as given; lookups are case-insensitive through
 * `COLLATE NOCASE` (which folds ASCII only, so non-ASCII local parts match exactly).
 */
import { closeSync, openSync } from "node:fs";
import Database from "better-sqlite3";
import { appPasswordId, canonicalAppPassword, checkAppPasswordName, generateAppPassword } from "./app-password.js";
import { CredentialCache } from "./cache.js";
import { SCRYPT_HASHER, type PasswordHasher, type UserSecrets } from "./user-secrets.js";
import type { Authenticator, UserInfo } from "./types.js";
import {
  appPasswordSecrets,
  appPasswordUseWorthRecording,
  normalizeAddress,
  normalizeSender,
  passwordStampOf,
  requireAddress,
  splitForms,
  toUserInfo,
  USER_STORE_CREDENTIALS,
  userLoginKey,
  userStoreScramShape,
  userStoreSecrets,
  verifyStoredPassword,
  type AppPasswordInfo,
  type LoginAppPassword,
  type UserStoreAdmin,
} from "./user-store-rules.js";
import type { CramMd5Secret, CredentialKind, ScramCredentials, ScramShape, VerifyContext, VerifyResult } from "../sasl/types.js";

export { generateSecretsFor, type PasswordHasher, type UserSecrets } from "./user-secrets.js";
export { normalizeAddress, type AppPasswordInfo } from "./user-store-rules.js";

export interface SqliteUserStoreOptions {
  path: string;
  /** Server host name: the DIGEST-MD5 realm the stored HA1 values are computed for. */
  hostname: string;
  /** Verified-credentials cache lifetime; 0 disables the cache. Default 60. */
  cacheTtlSec?: number;
  /** A ready cache (tests inject one with a fake clock); overrides cacheTtlSec. */
  cache?: CredentialCache;
  hasher?: PasswordHasher;
  scramIterations?: number;
  /** auth.requireAppPasswords: the default for users without their own setting. Default false. */
  requireAppPasswords?: boolean;
  /** Injectable clock (app passwords' created and last-used times). */
  now?: () => Date;
}

/** Schema history: entry i upgrades user_version i to i+1. Never edit a shipped entry; append. */
const MIGRATIONS = [
  `CREATE TABLE users (
     address TEXT PRIMARY KEY COLLATE NOCASE,
     password_hash TEXT NOT NULL,
     scram_salt BLOB, scram_iterations INT, scram_stored_key BLOB, scram_server_key BLOB,
     cram_md5 BLOB,            -- Dovecot {CRAM-MD5} order: outer state, then inner state
     digest_ha1 BLOB,
     digest_realm TEXT,        -- the realm digest_ha1 was computed for
     senders TEXT NOT NULL DEFAULT '[]',   -- JSON array
     disabled INT NOT NULL DEFAULT 0,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   ) STRICT`,
  // A mail server relaying for its domains (`postern user add … --relay-client`, src/policy/sender.ts).
  `ALTER TABLE users ADD COLUMN relay_client INT NOT NULL DEFAULT 0`,
  // Per-device credentials (src/auth/app-password.ts): a scrypt hash each, found by a non-secret
  // lookup id so a login checks one hash however many a user has.
  `CREATE TABLE app_passwords (
     address TEXT NOT NULL COLLATE NOCASE,
     name TEXT NOT NULL,
     lookup_id TEXT NOT NULL,
     password_hash TEXT NOT NULL,
     created_at TEXT NOT NULL,
     last_used_at TEXT,
     last_used_ip TEXT,
     PRIMARY KEY (address, name),
     UNIQUE (address, lookup_id)
   ) STRICT`,
  // 1: app passwords only, 0: the main password too, NULL: auth.requireAppPasswords decides.
  `ALTER TABLE users ADD COLUMN require_app_passwords INT`,
  // App passwords for SCRAM-SHA-256 and CRAM-MD5: derived secrets of each form a user may type
  // (APP_PASSWORD_FORMS), SCRAM with the user's salt and iteration count at creation (kept here:
  // a key derived with another salt than the user's current one cannot serve).
  `ALTER TABLE app_passwords ADD COLUMN scram_salt BLOB;
   ALTER TABLE app_passwords ADD COLUMN scram_iterations INT;
   ALTER TABLE app_passwords ADD COLUMN scram_keys BLOB;   -- per form: StoredKey (32), ServerKey (32)
   ALTER TABLE app_passwords ADD COLUMN cram_md5 BLOB;     -- per form: outer state (16), inner state (16)`,
];

/** Every user has a password hash and the SCRAM, CRAM-MD5 and DIGEST-MD5 secrets derived at set time. */

function prepareStatements(db: Database.Database) {
  return {
    auth: db.prepare<[string], AuthRow>("SELECT address, password_hash, disabled, require_app_passwords FROM users WHERE address = ?"),
    info: db.prepare<[string], InfoRow>("SELECT address, senders, disabled, relay_client FROM users WHERE address = ?"),
    all: db.prepare<[], InfoRow>("SELECT address, senders, disabled, relay_client FROM users ORDER BY address"),
    scram: db.prepare<
      [number, string],
      {
        address: string;
        main_refused: number;
        scram_salt: Buffer | null;
        scram_iterations: number | null;
        scram_stored_key: Buffer | null;
        scram_server_key: Buffer | null;
      }
    >(`SELECT address, ${MAIN_REFUSED}, scram_salt, scram_iterations, scram_stored_key, scram_server_key FROM users WHERE address = ? AND disabled = 0`),
    exists: db.prepare<[string], { one: number }>("SELECT 1 AS one FROM users WHERE address = ? AND disabled = 0"),
    cram: db.prepare<[number, string], { address: string; main_refused: number; cram_md5: Buffer | null }>(
      `SELECT address, ${MAIN_REFUSED}, cram_md5 FROM users WHERE address = ? AND disabled = 0`,
    ),
    digest: db.prepare<[string, string, number], { digest_ha1: Buffer | null }>(
      `SELECT digest_ha1 FROM users WHERE address = ? AND digest_realm = ? AND disabled = 0 ${MAIN_ALLOWED}`,
    ),
    insert: db.prepare(`INSERT INTO users (address, password_hash, scram_salt, scram_iterations, scram_stored_key, scram_server_key,
      cram_md5, digest_ha1, digest_realm, senders, disabled, relay_client, require_app_passwords, created_at, updated_at)
      VALUES (@address, @passwordHash, @scramSalt, @scramIterations, @scramStoredKey, @scramServerKey,
      @cramMd5, @digestHa1, @digestRealm, @senders, 0, @relayClient, @requireAppPasswords, @now, @now)`),
    updateSecrets: db.prepare(`UPDATE users SET password_hash = @passwordHash, scram_salt = @scramSalt,
      scram_iterations = @scramIterations, scram_stored_key = @scramStoredKey, scram_server_key = @scramServerKey,
      cram_md5 = @cramMd5, digest_ha1 = @digestHa1, digest_realm = @digestRealm, updated_at = @now WHERE address = @address`),
    updateSenders: db.prepare<[string, string, string]>("UPDATE users SET senders = ?, updated_at = ? WHERE address = ?"),
    updateDisabled: db.prepare<[number, string, string]>("UPDATE users SET disabled = ?, updated_at = ? WHERE address = ?"),
    updateRelayClient: db.prepare<[number, string, string]>("UPDATE users SET relay_client = ?, updated_at = ? WHERE address = ?"),
    delete: db.prepare<[string]>("DELETE FROM users WHERE address = ?"),
    updateRequireApp: db.prepare<[number | null, string, string]>("UPDATE users SET require_app_passwords = ?, updated_at = ? WHERE address = ?"),
    appByLookup: db.prepare<[string, string], AppPasswordRow>(
      "SELECT name, password_hash, last_used_at, last_used_ip FROM app_passwords WHERE address = ? AND lookup_id = ?",
    ),
    appByName: db.prepare<[string, string], { one: number }>("SELECT 1 AS one FROM app_passwords WHERE address = ? AND name = ?"),
    appUsageByName: db.prepare<[string, string], AppPasswordRow>(
      "SELECT name, password_hash, last_used_at, last_used_ip FROM app_passwords WHERE address = ? AND name = ?",
    ),
    appScram: db.prepare<[string, Buffer, number], { name: string; scram_keys: Buffer | null }>(
      "SELECT name, scram_keys FROM app_passwords WHERE address = ? AND scram_salt = ? AND scram_iterations = ? ORDER BY name",
    ),
    appCram: db.prepare<[string], { name: string; cram_md5: Buffer | null }>("SELECT name, cram_md5 FROM app_passwords WHERE address = ? ORDER BY name"),
    appHasScram: db.prepare<[string], { scram_salt: Buffer; scram_iterations: number }>(
      "SELECT scram_salt, scram_iterations FROM app_passwords WHERE address = ? AND scram_keys IS NOT NULL LIMIT 1",
    ),
    appList: db.prepare<[string], { name: string; created_at: string; last_used_at: string | null; last_used_ip: string | null }>(
      "SELECT name, created_at, last_used_at, last_used_ip FROM app_passwords WHERE address = ? ORDER BY created_at, name",
    ),
    appInsert: db.prepare<[string, string, string, string, string, Buffer | null, number | null, Buffer | null, Buffer]>(
      `INSERT INTO app_passwords (address, name, lookup_id, password_hash, created_at, scram_salt, scram_iterations, scram_keys, cram_md5)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    appUsed: db.prepare<[string, string | null, string, string]>("UPDATE app_passwords SET last_used_at = ?, last_used_ip = ? WHERE address = ? AND name = ?"),
    appRevoke: db.prepare<[string, string]>("DELETE FROM app_passwords WHERE address = ? AND name = ?"),
    appDeleteAll: db.prepare<[string]>("DELETE FROM app_passwords WHERE address = ?"),
  };
}

/** The main secrets serve SCRAM, CRAM-MD5 and DIGEST-MD5 only where the main password is allowed (? = the default). */
const MAIN_ALLOWED = "AND COALESCE(require_app_passwords, ?) = 0";
/** 1 when the main password may not log in (? = the default); app passwords still may. */
const MAIN_REFUSED = "COALESCE(require_app_passwords, ?) <> 0 AS main_refused";

interface AuthRow {
  address: string;
  password_hash: string;
  disabled: number;
  require_app_passwords: number | null;
}
interface AppPasswordRow {
  name: string;
  password_hash: string;
  last_used_at: string | null;
  last_used_ip: string | null;
}
interface InfoRow {
  address: string;
  senders: string;
  disabled: number;
  relay_client: number;
}

export class SqliteUserStore implements Authenticator, UserStoreAdmin {
  private readonly db: Database.Database;
  private readonly hostname: string;
  private readonly cache: CredentialCache | null;
  private readonly hasher: PasswordHasher;
  private readonly scramIterations: number | undefined;
  private readonly sql: ReturnType<typeof prepareStatements>;
  /** auth.requireAppPasswords as SQL wants it. */
  private readonly requireAppDefault: number;
  private readonly now: () => Date;

  constructor(options: SqliteUserStoreOptions) {
    this.hostname = options.hostname;
    this.requireAppDefault = options.requireAppPasswords ? 1 : 0;
    this.now = options.now ?? (() => new Date());
    this.hasher = options.hasher ?? SCRYPT_HASHER;
    this.scramIterations = options.scramIterations;
    const ttlSec = options.cacheTtlSec ?? 60;
    this.cache = options.cache ?? (ttlSec > 0 ? new CredentialCache({ ttlMs: ttlSec * 1000 }) : null);
    // Create the file owner-only before SQLite does; its -wal/-shm files copy these permissions.
    if (options.path !== ":memory:") closeSync(openSync(options.path, "a", 0o600));
    this.db = new Database(options.path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("busy_timeout = 5000"); // the CLI and the server share the file
    this.db.pragma("synchronous = FULL"); // user changes are rare; do not lose an acknowledged one
    this.db.pragma("secure_delete = ON"); // overwrite old hashes instead of leaving them in free pages
    this.migrate();
    this.sql = prepareStatements(this.db);
  }

  private migrate(): void {
    const upgrade = this.db.transaction(() => {
      const version = this.db.pragma("user_version", { simple: true }) as number;
      if (version > MIGRATIONS.length) {
        throw new Error(`user database schema ${version} is newer than this Postern (knows ${MIGRATIONS.length})`);
      }
      for (let v = version; v < MIGRATIONS.length; v++) this.db.exec(MIGRATIONS[v]!);
      this.db.pragma(`user_version = ${MIGRATIONS.length}`);
    });
    upgrade.immediate(); // take the write lock first, so two processes cannot both migrate
  }

  // ---- CredentialVerifier -------------------------------------------------------------------

  /** PLAIN/LOGIN: the rules of user-store-rules.ts (one scrypt however it ends; never throws). */
  verifyPassword(user: string, password: string, context: VerifyContext = {}): Promise<VerifyResult> {
    return verifyStoredPassword(
      {
        hasher: this.hasher,
        cache: this.cache,
        user: async (address) => {
          const row = this.sql.auth.get(address);
          return row && { address: row.address, passwordHash: row.password_hash, disabled: row.disabled !== 0, mainRefused: this.mainRefused(row) };
        },
        appPasswordByLookupId: async (address, lookupId) => {
          const app = this.sql.appByLookup.get(address, lookupId);
          return app && loginAppPassword(app);
        },
        noteAppPasswordUse: (address, app, remoteIp) => this.noteAppPasswordUse(address, app, remoteIp),
      },
      user,
      password,
      context,
    );
  }

  /** Null for unknown or disabled users. Throws on a database error (mechanisms report backend-error). */
  async scramSha256(user: string): Promise<ScramCredentials | null> {
    const row = this.byAddress(user, (address) => this.sql.scram.get(this.requireAppDefault, address));
    if (!row?.scram_salt || !row.scram_iterations || !row.scram_stored_key || !row.scram_server_key) return null;
    // Only app passwords derived with the user's current salt and count can match the proof.
    const appPasswords = this.sql.appScram
      .all(row.address, row.scram_salt, row.scram_iterations)
      .flatMap((app) =>
        splitForms(app.scram_keys, 64).map((keys) => ({ name: app.name, secret: { storedKey: keys.subarray(0, 32), serverKey: keys.subarray(32) } })),
      );
    return {
      salt: row.scram_salt,
      iterations: row.scram_iterations,
      storedKey: row.scram_stored_key,
      serverKey: row.scram_server_key,
      ...(appPasswords.length > 0 ? { appPasswords } : {}),
      ...(row.main_refused ? { mainRefused: true } : {}),
    };
  }

  async cramMd5(user: string): Promise<CramMd5Secret | null> {
    const row = this.byAddress(user, (address) => this.sql.cram.get(this.requireAppDefault, address));
    if (row?.cram_md5?.length !== 32) return null;
    const appPasswords = this.sql.appCram
      .all(row.address)
      .flatMap((app) => splitForms(app.cram_md5, 32).map((state) => ({ name: app.name, secret: { outer: state.subarray(0, 16), inner: state.subarray(16) } })));
    return {
      outer: row.cram_md5.subarray(0, 16),
      inner: row.cram_md5.subarray(16),
      ...(appPasswords.length > 0 ? { appPasswords } : {}),
      ...(row.main_refused ? { mainRefused: true } : {}),
    };
  }

  /** SCRAM or CRAM-MD5 logged in with an app password: recorded like a PLAIN login with one. */
  appPasswordUsed(user: string, name: string, context: VerifyContext = {}): void {
    try {
      const address = normalizeAddress(user);
      const app = address === null ? undefined : this.sql.appUsageByName.get(address, name);
      if (app && address !== null) this.noteAppPasswordUse(this.sql.auth.get(address)?.address ?? address, loginAppPassword(app), context.remoteIp);
    } catch {
      // The login stands; the record waits for the next one.
    }
  }

  /** Only the realm the HA1 was computed for (the store's host name) has a secret. */
  async digestMd5(user: string, realm: string): Promise<Buffer | null> {
    const ha1 = this.byAddress(user, (address) => this.sql.digest.get(address, realm, this.requireAppDefault))?.digest_ha1;
    return ha1?.length === 16 ? ha1 : null;
  }

  /** An enabled user of this store (a DIGEST-MD5 realm or a secret it lacks is then "no-usable-secret"). */
  hasUser(user: string): boolean {
    return this.byAddress(user, (address) => this.sql.exists.get(address)) !== undefined;
  }

  credentials(): readonly CredentialKind[] {
    return USER_STORE_CREDENTIALS;
  }

  /** What lookups match on: normalizeAddress (trim, domain lower-cased), then NOCASE's ASCII folding. */
  loginKey(user: string): string {
    return userLoginKey(user);
  }

  scramShape(): ScramShape {
    return userStoreScramShape(this.scramIterations);
  }

  // ---- Authenticator ------------------------------------------------------------------------

  /** Disabled users are returned (with `disabled: true`): they still exist as recipients. */
  async lookupUser(address: string): Promise<UserInfo | null> {
    const row = this.byAddress(address, (normalized) => this.sql.info.get(normalized));
    return row ? userInfo(row) : null;
  }

  async passwordStamp(address: string): Promise<string | null> {
    const row = this.byAddress(address, (normalized) => this.sql.auth.get(normalized));
    return row ? passwordStampOf(row.password_hash) : null;
  }

  close(): void {
    if (this.db.open) this.db.close();
    this.cache?.clear();
  }

  // ---- administration (the `postern user` CLI) ----------------------------------------------

  async addUser(address: string, password: string, opts: { senders?: string[]; relayClient?: boolean; requireAppPasswords?: boolean } = {}): Promise<void> {
    const normalized = requireAddress(address);
    const senders = JSON.stringify((opts.senders ?? []).map(normalizeSender));
    if (this.sql.auth.get(normalized)) throw new Error(`user already exists: ${normalized}`);
    const secrets = await this.secretsFor(password, normalized);
    try {
      const requireAppPasswords = opts.requireAppPasswords === undefined ? null : opts.requireAppPasswords ? 1 : 0;
      this.sql.insert.run({ ...secretColumns(normalized, secrets), senders, relayClient: opts.relayClient ? 1 : 0, requireAppPasswords });
    } catch (err) {
      // Another process may have added the same user while we were hashing.
      if ((err as { code?: string }).code === "SQLITE_CONSTRAINT_PRIMARYKEY") throw new Error(`user already exists: ${normalized}`);
      throw err;
    }
  }

  async setPassword(address: string, password: string): Promise<void> {
    const row = this.requireUser(address);
    // App passwords' SCRAM keys were derived with the user's salt and count: keep those, so a new
    // main password does not silently take SCRAM away from every device.
    const kept = this.sql.appHasScram.get(row.address);
    const secrets = await this.secretsFor(password, row.address, kept ? { salt: kept.scram_salt, iterations: kept.scram_iterations } : undefined);
    if (this.sql.updateSecrets.run(secretColumns(row.address, secrets)).changes === 0) throw new Error(`no such user: ${row.address}`);
    this.cache?.invalidateUser(row.address);
  }

  deleteUser(address: string): boolean {
    const row = this.byAddress(address, (normalized) => this.sql.auth.get(normalized));
    if (!row) return false;
    this.cache?.invalidateUser(row.address);
    return this.db.transaction(() => {
      this.sql.appDeleteAll.run(row.address);
      return this.sql.delete.run(row.address).changes > 0;
    })();
  }

  listUsers(): UserInfo[] {
    return this.sql.all.all().map(userInfo);
  }

  setSenders(address: string, senders: string[]): void {
    const row = this.requireUser(address);
    this.sql.updateSenders.run(JSON.stringify(senders.map(normalizeSender)), new Date().toISOString(), row.address);
  }

  setRelayClient(address: string, relayClient: boolean): void {
    const row = this.requireUser(address);
    this.sql.updateRelayClient.run(relayClient ? 1 : 0, new Date().toISOString(), row.address);
  }

  setDisabled(address: string, disabled: boolean): void {
    const row = this.requireUser(address);
    this.sql.updateDisabled.run(disabled ? 1 : 0, new Date().toISOString(), row.address);
    this.cache?.invalidateUser(row.address);
  }

  /** `on`/`off` for this user, or null: auth.requireAppPasswords decides. */
  setRequireAppPasswords(address: string, required: boolean | null): void {
    const row = this.requireUser(address);
    this.sql.updateRequireApp.run(required === null ? null : required ? 1 : 0, this.now().toISOString(), row.address);
    this.cache?.invalidateUser(row.address);
  }

  /** Whether the main password is refused for this user, and whether by its own setting or the default. */
  requiresAppPasswords(address: string): { required: boolean; byDefault: boolean } {
    const row = this.requireUser(address);
    return { required: this.mainRefused(row), byDefault: row.require_app_passwords === null };
  }

  /** A new app password for `name`: returned once, stored only as a hash. */
  async addAppPassword(address: string, name: string): Promise<string> {
    const row = this.requireUser(address);
    const label = checkAppPasswordName(name);
    if (this.sql.appByName.get(row.address, label)) throw new Error(`${row.address} already has an app password named ${JSON.stringify(label)}`);
    let password = generateAppPassword();
    // The lookup id must be unique per user: draw again on the rare clash.
    while (this.sql.appByLookup.get(row.address, appPasswordId(canonicalAppPassword(password)!))) password = generateAppPassword();
    const canonical = canonicalAppPassword(password)!;
    const hash = await this.hasher.hash(canonical);
    // SCRAM and CRAM-MD5 key on the exact text the client types, SCRAM with the user's salt and count.
    const scram = this.sql.scram.get(this.requireAppDefault, row.address);
    const salt = scram?.scram_salt ?? null;
    const iterations = scram?.scram_iterations ?? null;
    const { scramKeys, cramMd5: cram } = appPasswordSecrets(password, salt, iterations);
    try {
      this.sql.appInsert.run(row.address, label, appPasswordId(canonical), hash, this.now().toISOString(), salt, iterations, scramKeys, cram);
    } catch (err) {
      // Another process added the same name (or drew the same id) while we were hashing.
      if (String((err as { code?: string }).code).startsWith("SQLITE_CONSTRAINT")) {
        throw new Error(`${row.address} already has an app password named ${JSON.stringify(label)} (or a clash: try again)`);
      }
      throw err;
    }
    return password;
  }

  listAppPasswords(address: string): AppPasswordInfo[] {
    const row = this.requireUser(address);
    return this.sql.appList.all(row.address).map((r) => ({ name: r.name, createdAt: r.created_at, lastUsedAt: r.last_used_at, lastUsedIp: r.last_used_ip }));
  }

  /**
   * False when there is none of that name. Effective at once in every process: a login reads the
   * app password's row (and its hash is the cache entry's stamp), so a deleted row matches nothing.
   */
  revokeAppPassword(address: string, name: string): boolean {
    const row = this.requireUser(address);
    const removed = this.sql.appRevoke.run(row.address, name.trim()).changes > 0;
    this.cache?.invalidateUser(row.address);
    return removed;
  }

  // ---- helpers ------------------------------------------------------------------------------

  private mainRefused(row: AuthRow): boolean {
    return (row.require_app_passwords ?? this.requireAppDefault) !== 0;
  }

  /** Last used, from where: written only when the address changed or a minute passed; never fails a login. */
  private noteAppPasswordUse(address: string, app: LoginAppPassword, remoteIp: string | undefined): void {
    const now = this.now();
    const ip = remoteIp ?? null;
    if (!appPasswordUseWorthRecording(app.lastUsedAt, app.lastUsedIp, ip, now)) return;
    try {
      this.sql.appUsed.run(now.toISOString(), ip, address, app.name);
    } catch {
      // A busy or read-only database: the login stands, the record waits for the next one.
    }
  }

  private byAddress<T>(address: string, query: (normalized: string) => T | undefined): T | undefined {
    const normalized = normalizeAddress(address);
    return normalized === null ? undefined : query(normalized);
  }

  private requireUser(address: string): AuthRow {
    const row = this.sql.auth.get(requireAddress(address));
    if (!row) throw new Error(`no such user: ${address.trim()}`);
    return row;
  }

  private secretsFor(password: string, address: string, scram?: { salt: Buffer; iterations: number }): Promise<UserSecrets> {
    return userStoreSecrets(password, address, { hostname: this.hostname, hasher: this.hasher, scramIterations: this.scramIterations }, scram);
  }
}

function loginAppPassword(app: AppPasswordRow): LoginAppPassword {
  return { name: app.name, passwordHash: app.password_hash, lastUsedAt: app.last_used_at, lastUsedIp: app.last_used_ip };
}

function userInfo(row: InfoRow): UserInfo {
  return toUserInfo({ address: row.address, senders: JSON.parse(row.senders), disabled: row.disabled !== 0, relayClient: row.relay_client !== 0 });
}

function secretColumns(address: string, s: UserSecrets) {
  return {
    address,
    passwordHash: s.passwordHash,
    scramSalt: s.scram.salt,
    scramIterations: s.scram.iterations,
    scramStoredKey: s.scram.storedKey,
    scramServerKey: s.scram.serverKey,
    cramMd5: Buffer.concat([s.cramMd5.outer, s.cramMd5.inner]),
    digestHa1: s.digestHa1,
    digestRealm: s.digestRealm,
    now: new Date().toISOString(),
  };
}
