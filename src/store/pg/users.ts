/**
 * The built-in user store on the PostgreSQL several nodes share (`store.backend: postgres`): the
 * same rows, rules and secrets as the SQLite store (src/auth/sqlite-store.ts, the reference), the
 * rules themselves shared through src/auth/user-store-rules.ts. Every login reads its rows, so a
 * user added, a password changed or an app password revoked through any node counts on every
 * node at the next login; the verified-credentials cache is keyed by the stored hash read then.
 *
 * Lookups match `login_key`, the address folded as SQLite's NOCASE folds it (ASCII only).
 */
import { appPasswordId, canonicalAppPassword, checkAppPasswordName, generateAppPassword } from "../../auth/app-password.js";
import { CredentialCache } from "../../auth/cache.js";
import type { Authenticator, UserInfo } from "../../auth/types.js";
import { SCRYPT_HASHER, type PasswordHasher, type UserSecrets } from "../../auth/user-secrets.js";
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
} from "../../auth/user-store-rules.js";
import type { CramMd5Secret, CredentialKind, ScramCredentials, ScramShape, VerifyContext, VerifyResult } from "../../sasl/types.js";
import { PG_UNIQUE_VIOLATION, pgErrorCode, statement, type PgPool } from "./pool.js";

export interface PgUserStoreOptions {
  pool: PgPool;
  /** Server host name: the DIGEST-MD5 realm the stored HA1 values are computed for. */
  hostname: string;
  /** Verified-credentials cache lifetime; 0 disables the cache. Default 60. */
  cacheTtlSec?: number;
  cache?: CredentialCache;
  hasher?: PasswordHasher;
  scramIterations?: number;
  /** auth.requireAppPasswords: the default for users without their own setting. Default false. */
  requireAppPasswords?: boolean;
  /** Injectable clock (app passwords' created and last-used times). */
  now?: () => Date;
}

/** Every user has a password hash and the SCRAM, CRAM-MD5 and DIGEST-MD5 secrets derived at set time. */

/** $1 is auth.requireAppPasswords: a user without a setting follows it. */
const MAIN_REFUSED = "COALESCE(require_app_passwords, $1) AS main_refused";

const SQL = {
  auth: statement("users-auth", "SELECT address, password_hash, disabled, require_app_passwords FROM users WHERE login_key = $1"),
  info: statement("users-info", "SELECT address, senders, disabled, relay_client FROM users WHERE login_key = $1"),
  all: statement("users-all", "SELECT address, senders, disabled, relay_client FROM users ORDER BY login_key"),
  // One round trip whether the user exists or not, app passwords included: the time to the
  // server-first message must not tell a known login from an unknown one (SECURITY.md rule 14).
  scram: statement(
    "users-scram",
    `SELECT address, ${MAIN_REFUSED}, scram_salt, scram_iterations, scram_stored_key, scram_server_key,
       ARRAY(SELECT a.name FROM app_passwords a WHERE a.login_key = u.login_key AND a.scram_salt = u.scram_salt
             AND a.scram_iterations = u.scram_iterations AND a.scram_keys IS NOT NULL ORDER BY a.name) AS app_names,
       ARRAY(SELECT a.scram_keys FROM app_passwords a WHERE a.login_key = u.login_key AND a.scram_salt = u.scram_salt
             AND a.scram_iterations = u.scram_iterations AND a.scram_keys IS NOT NULL ORDER BY a.name) AS app_keys
     FROM users u WHERE login_key = $2 AND NOT disabled`,
  ),
  cram: statement(
    "users-cram",
    `SELECT address, ${MAIN_REFUSED}, cram_md5,
       ARRAY(SELECT a.name FROM app_passwords a WHERE a.login_key = u.login_key AND a.cram_md5 IS NOT NULL ORDER BY a.name) AS app_names,
       ARRAY(SELECT a.cram_md5 FROM app_passwords a WHERE a.login_key = u.login_key AND a.cram_md5 IS NOT NULL ORDER BY a.name) AS app_keys
     FROM users u WHERE login_key = $2 AND NOT disabled`,
  ),
  digest: statement("users-digest", `SELECT ${MAIN_REFUSED}, digest_ha1, digest_realm FROM users WHERE login_key = $2 AND NOT disabled`),
  insert: statement(
    "users-insert",
    `INSERT INTO users (login_key, address, password_hash, scram_salt, scram_iterations, scram_stored_key, scram_server_key,
       cram_md5, digest_ha1, digest_realm, senders, relay_client, require_app_passwords, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $14)
     ON CONFLICT (login_key) DO NOTHING`,
  ),
  updateSecrets: statement(
    "users-update-secrets",
    `UPDATE users SET password_hash = $2, scram_salt = $3, scram_iterations = $4, scram_stored_key = $5, scram_server_key = $6,
       cram_md5 = $7, digest_ha1 = $8, digest_realm = $9, updated_at = $10 WHERE login_key = $1`,
  ),
  updateSenders: statement("users-update-senders", "UPDATE users SET senders = $2::jsonb, updated_at = $3 WHERE login_key = $1"),
  updateDisabled: statement("users-update-disabled", "UPDATE users SET disabled = $2, updated_at = $3 WHERE login_key = $1"),
  updateRelayClient: statement("users-update-relay-client", "UPDATE users SET relay_client = $2, updated_at = $3 WHERE login_key = $1"),
  updateRequireApp: statement("users-update-require-app", "UPDATE users SET require_app_passwords = $2, updated_at = $3 WHERE login_key = $1"),
  // Its app passwords go with it (ON DELETE CASCADE).
  delete: statement("users-delete", "DELETE FROM users WHERE login_key = $1"),
  appByLookup: statement(
    "apppw-by-lookup",
    "SELECT name, password_hash, last_used_at, last_used_ip FROM app_passwords WHERE login_key = $1 AND lookup_id = $2",
  ),
  appByName: statement("apppw-by-name", "SELECT name, password_hash, last_used_at, last_used_ip FROM app_passwords WHERE login_key = $1 AND name = $2"),
  appHasScram: statement("apppw-has-scram", "SELECT scram_salt, scram_iterations FROM app_passwords WHERE login_key = $1 AND scram_keys IS NOT NULL LIMIT 1"),
  appList: statement("apppw-list", "SELECT name, created_at, last_used_at, last_used_ip FROM app_passwords WHERE login_key = $1 ORDER BY created_at, name"),
  appInsert: statement(
    "apppw-insert",
    `INSERT INTO app_passwords (login_key, name, lookup_id, password_hash, created_at, scram_salt, scram_iterations, scram_keys, cram_md5)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
  ),
  appUsed: statement("apppw-used", "UPDATE app_passwords SET last_used_at = $3, last_used_ip = $4 WHERE login_key = $1 AND name = $2"),
  appRevoke: statement("apppw-revoke", "DELETE FROM app_passwords WHERE login_key = $1 AND name = $2"),
};

interface AuthRow {
  address: string;
  password_hash: string;
  disabled: boolean;
  require_app_passwords: boolean | null;
}
interface InfoRow {
  address: string;
  senders: unknown;
  disabled: boolean;
  relay_client: boolean;
}
interface AppRow {
  name: string;
  password_hash: string;
  last_used_at: Date | null;
  last_used_ip: string | null;
}
interface SecretsRow {
  address: string;
  main_refused: boolean;
  app_names: string[];
  app_keys: Buffer[];
}

/** How long "this login exists" from a secret lookup answers hasUser, which follows it at once. */
const SEEN_TTL_MS = 10_000;
const SEEN_MAX = 1000;

export class PgUserStore implements Authenticator, UserStoreAdmin {
  private readonly pool: PgPool;
  private readonly hostname: string;
  private readonly cache: CredentialCache | null;
  private readonly hasher: PasswordHasher;
  private readonly scramIterations: number | undefined;
  private readonly requireAppDefault: boolean;
  private readonly now: () => Date;
  /** Login key → whether the last secret lookup found the user (enabled), and when. */
  private readonly seen = new Map<string, { exists: boolean; at: number }>();

  constructor(options: PgUserStoreOptions) {
    this.pool = options.pool;
    this.hostname = options.hostname;
    this.requireAppDefault = options.requireAppPasswords ?? false;
    this.now = options.now ?? (() => new Date());
    this.hasher = options.hasher ?? SCRYPT_HASHER;
    this.scramIterations = options.scramIterations;
    const ttlSec = options.cacheTtlSec ?? 60;
    this.cache = options.cache ?? (ttlSec > 0 ? new CredentialCache({ ttlMs: ttlSec * 1000 }) : null);
  }

  // ---- CredentialVerifier -------------------------------------------------------------------

  verifyPassword(user: string, password: string, context: VerifyContext = {}): Promise<VerifyResult> {
    return verifyStoredPassword(
      {
        hasher: this.hasher,
        cache: this.cache,
        user: async (address) => {
          const row = await this.authRow(address);
          return row && { address: row.address, passwordHash: row.password_hash, disabled: row.disabled, mainRefused: this.mainRefused(row) };
        },
        appPasswordByLookupId: async (address, lookupId) => {
          const app = (await this.pool.run<AppRow>(SQL.appByLookup, [userLoginKey(address), lookupId])).rows[0];
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
    type Row = SecretsRow & { scram_salt: Buffer | null; scram_iterations: number | null; scram_stored_key: Buffer | null; scram_server_key: Buffer | null };
    const row = await this.secretsRow<Row>(SQL.scram, user);
    if (!row?.scram_salt || !row.scram_iterations || !row.scram_stored_key || !row.scram_server_key) return null;
    const appPasswords = appSecrets(row, 64).map(({ name, secret }) => ({
      name,
      secret: { storedKey: secret.subarray(0, 32), serverKey: secret.subarray(32) },
    }));
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
    const row = await this.secretsRow<SecretsRow & { cram_md5: Buffer | null }>(SQL.cram, user);
    if (row?.cram_md5?.length !== 32) return null;
    const appPasswords = appSecrets(row, 32).map(({ name, secret }) => ({ name, secret: { outer: secret.subarray(0, 16), inner: secret.subarray(16) } }));
    return {
      outer: row.cram_md5.subarray(0, 16),
      inner: row.cram_md5.subarray(16),
      ...(appPasswords.length > 0 ? { appPasswords } : {}),
      ...(row.main_refused ? { mainRefused: true } : {}),
    };
  }

  /** Only the realm the HA1 was computed for (the store's host name), and only where the main password may log in. */
  async digestMd5(user: string, realm: string): Promise<Buffer | null> {
    const row = await this.secretsRow<{ main_refused: boolean; digest_ha1: Buffer | null; digest_realm: string | null }>(SQL.digest, user);
    if (!row || row.main_refused || row.digest_realm !== realm) return null;
    return row.digest_ha1?.length === 16 ? row.digest_ha1 : null;
  }

  /** SCRAM or CRAM-MD5 logged in with an app password: recorded like a PLAIN login with one. */
  appPasswordUsed(user: string, name: string, context: VerifyContext = {}): void {
    const address = normalizeAddress(user);
    if (address === null) return;
    void (async () => {
      const [row, app] = await Promise.all([this.authRow(address), this.pool.run<AppRow>(SQL.appByName, [userLoginKey(address), name])]);
      const found = app.rows[0];
      if (found) this.noteAppPasswordUse(row?.address ?? address, loginAppPassword(found), context.remoteIp);
    })().catch(() => {
      // The login stands; the record waits for the next one.
    });
  }

  /**
   * An enabled user of this store, as the secret lookup just made for this login saw it (asked
   * only after one returned null: the log tells no-usable-secret from unknown-user). No query of
   * its own: a second round trip for some logins only would show in the reply time.
   */
  hasUser(user: string): boolean {
    const seen = this.seen.get(this.loginKey(user));
    return seen?.exists === true && Date.now() - seen.at < SEEN_TTL_MS;
  }

  credentials(): readonly CredentialKind[] {
    return USER_STORE_CREDENTIALS;
  }

  loginKey(user: string): string {
    return userLoginKey(user);
  }

  scramShape(): ScramShape {
    return userStoreScramShape(this.scramIterations);
  }

  // ---- Authenticator ------------------------------------------------------------------------

  /** Disabled users are returned (with `disabled: true`): they still exist as recipients. */
  async lookupUser(address: string): Promise<UserInfo | null> {
    const normalized = normalizeAddress(address);
    if (normalized === null) return null;
    const row = (await this.pool.run<InfoRow>(SQL.info, [userLoginKey(normalized)])).rows[0];
    return row ? userInfo(row) : null;
  }

  async passwordStamp(address: string): Promise<string | null> {
    const normalized = normalizeAddress(address);
    if (normalized === null) return null;
    const row = await this.authRow(normalized);
    return row ? passwordStampOf(row.password_hash) : null;
  }

  /** The pool is the node's (server.ts ends it); only this store's cache goes. */
  close(): void {
    this.cache?.clear();
    this.seen.clear();
  }

  // ---- administration -----------------------------------------------------------------------

  async addUser(address: string, password: string, opts: { senders?: string[]; relayClient?: boolean; requireAppPasswords?: boolean } = {}): Promise<void> {
    const normalized = requireAddress(address);
    const senders = JSON.stringify((opts.senders ?? []).map(normalizeSender));
    if (await this.authRow(normalized)) throw new Error(`user already exists: ${normalized}`);
    const s = await this.secretsFor(password, normalized);
    // ON CONFLICT: another node may have added the same user while we were hashing.
    const added = await this.pool.run(SQL.insert, [
      userLoginKey(normalized),
      normalized,
      ...secretValues(s),
      senders,
      opts.relayClient === true,
      opts.requireAppPasswords ?? null,
      new Date(),
    ]);
    if (added.rowCount === 0) throw new Error(`user already exists: ${normalized}`);
  }

  async setPassword(address: string, password: string): Promise<void> {
    const row = await this.requireUser(address);
    const key = userLoginKey(row.address);
    // App passwords' SCRAM keys were derived with the user's salt and count: keep those, so a new
    // main password does not silently take SCRAM away from every device.
    const kept = (await this.pool.run<{ scram_salt: Buffer; scram_iterations: number }>(SQL.appHasScram, [key])).rows[0];
    const s = await this.secretsFor(password, row.address, kept ? { salt: kept.scram_salt, iterations: kept.scram_iterations } : undefined);
    const updated = await this.pool.run(SQL.updateSecrets, [key, ...secretValues(s), new Date()]);
    if (updated.rowCount === 0) throw new Error(`no such user: ${row.address}`);
    this.cache?.invalidateUser(row.address);
  }

  async deleteUser(address: string): Promise<boolean> {
    const normalized = normalizeAddress(address);
    if (normalized === null) return false;
    const row = await this.authRow(normalized);
    if (!row) return false;
    this.cache?.invalidateUser(row.address);
    return ((await this.pool.run(SQL.delete, [userLoginKey(normalized)])).rowCount ?? 0) > 0;
  }

  async listUsers(): Promise<UserInfo[]> {
    return (await this.pool.run<InfoRow>(SQL.all)).rows.map(userInfo);
  }

  async setSenders(address: string, senders: string[]): Promise<void> {
    const row = await this.requireUser(address);
    await this.pool.run(SQL.updateSenders, [userLoginKey(row.address), JSON.stringify(senders.map(normalizeSender)), new Date()]);
  }

  async setRelayClient(address: string, relayClient: boolean): Promise<void> {
    const row = await this.requireUser(address);
    await this.pool.run(SQL.updateRelayClient, [userLoginKey(row.address), relayClient, new Date()]);
  }

  async setDisabled(address: string, disabled: boolean): Promise<void> {
    const row = await this.requireUser(address);
    await this.pool.run(SQL.updateDisabled, [userLoginKey(row.address), disabled, new Date()]);
    this.cache?.invalidateUser(row.address);
  }

  async setRequireAppPasswords(address: string, required: boolean | null): Promise<void> {
    const row = await this.requireUser(address);
    await this.pool.run(SQL.updateRequireApp, [userLoginKey(row.address), required, this.now()]);
    this.cache?.invalidateUser(row.address);
  }

  async requiresAppPasswords(address: string): Promise<{ required: boolean; byDefault: boolean }> {
    const row = await this.requireUser(address);
    return { required: this.mainRefused(row), byDefault: row.require_app_passwords === null };
  }

  async addAppPassword(address: string, name: string): Promise<string> {
    const row = await this.requireUser(address);
    const key = userLoginKey(row.address);
    const label = checkAppPasswordName(name);
    if ((await this.pool.run(SQL.appByName, [key, label])).rows.length > 0) {
      throw new Error(`${row.address} already has an app password named ${JSON.stringify(label)}`);
    }
    let password = generateAppPassword();
    // The lookup id must be unique per user: draw again on the rare clash.
    while ((await this.pool.run(SQL.appByLookup, [key, appPasswordId(canonicalAppPassword(password)!)])).rows.length > 0) password = generateAppPassword();
    const canonical = canonicalAppPassword(password)!;
    const hash = await this.hasher.hash(canonical);
    const scram = (await this.pool.run<{ scram_salt: Buffer | null; scram_iterations: number | null }>(SQL.scram, [this.requireAppDefault, key])).rows[0];
    const salt = scram?.scram_salt ?? null;
    const iterations = scram?.scram_iterations ?? null;
    const { scramKeys, cramMd5 } = appPasswordSecrets(password, salt, iterations);
    try {
      await this.pool.run(SQL.appInsert, [key, label, appPasswordId(canonical), hash, this.now(), salt, iterations, scramKeys, cramMd5]);
    } catch (err) {
      // Another node added the same name (or drew the same id) while we were hashing.
      if (pgErrorCode(err) === PG_UNIQUE_VIOLATION) {
        throw new Error(`${row.address} already has an app password named ${JSON.stringify(label)} (or a clash: try again)`);
      }
      throw err;
    }
    return password;
  }

  async listAppPasswords(address: string): Promise<AppPasswordInfo[]> {
    const row = await this.requireUser(address);
    const rows = (
      await this.pool.run<{ name: string; created_at: Date; last_used_at: Date | null; last_used_ip: string | null }>(SQL.appList, [userLoginKey(row.address)])
    ).rows;
    return rows.map((r) => ({
      name: r.name,
      createdAt: r.created_at.toISOString(),
      lastUsedAt: r.last_used_at?.toISOString() ?? null,
      lastUsedIp: r.last_used_ip,
    }));
  }

  /** Effective at once on every node: a login reads the app password's row, and a deleted row matches nothing. */
  async revokeAppPassword(address: string, name: string): Promise<boolean> {
    const row = await this.requireUser(address);
    const removed = ((await this.pool.run(SQL.appRevoke, [userLoginKey(row.address), name.trim()])).rowCount ?? 0) > 0;
    this.cache?.invalidateUser(row.address);
    return removed;
  }

  // ---- helpers ------------------------------------------------------------------------------

  private mainRefused(row: AuthRow): boolean {
    return row.require_app_passwords ?? this.requireAppDefault;
  }

  private async authRow(address: string): Promise<AuthRow | undefined> {
    return (await this.pool.run<AuthRow>(SQL.auth, [userLoginKey(address)])).rows[0];
  }

  /** A mechanism's secrets row; remembers whether the login exists for hasUser. */
  private async secretsRow<R>(stmt: (typeof SQL)["scram"], user: string): Promise<R | undefined> {
    const normalized = normalizeAddress(user);
    if (normalized === null) return undefined;
    const key = userLoginKey(normalized);
    const row = (await this.pool.run(stmt, [this.requireAppDefault, key])).rows[0] as R | undefined;
    if (this.seen.size >= SEEN_MAX) this.seen.delete(this.seen.keys().next().value!);
    this.seen.delete(key);
    this.seen.set(key, { exists: row !== undefined, at: Date.now() });
    return row;
  }

  private async requireUser(address: string): Promise<AuthRow> {
    const row = await this.authRow(requireAddress(address));
    if (!row) throw new Error(`no such user: ${address.trim()}`);
    return row;
  }

  /** Last used, from where: written only when the address changed or a minute passed; never fails a login. */
  private noteAppPasswordUse(address: string, app: LoginAppPassword, remoteIp: string | undefined): void {
    const now = this.now();
    const ip = remoteIp ?? null;
    if (!appPasswordUseWorthRecording(app.lastUsedAt, app.lastUsedIp, ip, now)) return;
    this.pool.run(SQL.appUsed, [userLoginKey(address), app.name, now, ip]).catch(() => {
      // The database is away: the login stands, the record waits for the next one.
    });
  }

  private secretsFor(password: string, address: string, scram?: { salt: Buffer; iterations: number }): Promise<UserSecrets> {
    return userStoreSecrets(password, address, { hostname: this.hostname, hasher: this.hasher, scramIterations: this.scramIterations }, scram);
  }
}

/** The per-form secrets of each app password in a secrets row (names and blobs in the same order). */
function appSecrets(row: SecretsRow, size: number): { name: string; secret: Buffer }[] {
  return row.app_names.flatMap((name, i) => splitForms(row.app_keys[i] ?? null, size).map((secret) => ({ name, secret })));
}

function loginAppPassword(app: AppRow): LoginAppPassword {
  return { name: app.name, passwordHash: app.password_hash, lastUsedAt: app.last_used_at?.toISOString() ?? null, lastUsedIp: app.last_used_ip };
}

function userInfo(row: InfoRow): UserInfo {
  return toUserInfo({ address: row.address, senders: row.senders, disabled: row.disabled, relayClient: row.relay_client });
}

/** A user's secrets in the order of the users table's columns password_hash to digest_realm. */
function secretValues(s: UserSecrets): unknown[] {
  return [
    s.passwordHash,
    s.scram.salt,
    s.scram.iterations,
    s.scram.storedKey,
    s.scram.serverKey,
    Buffer.concat([s.cramMd5.outer, s.cramMd5.inner]),
    s.digestHa1,
    s.digestRealm,
  ];
}
