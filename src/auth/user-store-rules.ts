/**
 * The built-in user store's rules, whatever holds its rows: the embedded SQLite file
 * (sqlite-store.ts) or the PostgreSQL shared by several nodes (src/store/pg/users.ts). Address
 * normalising, the password login (one scrypt however it ends), app passwords' derived secrets,
 * and the admin operations both stores offer (`UserStoreAdmin`, for `postern user` and the web pages).
 */
import { createHash } from "node:crypto";
import { appPasswordForms, appPasswordId, canonicalAppPassword } from "./app-password.js";
import type { CredentialCache } from "./cache.js";
import { DUMMY_PASSWORD_HASH } from "./password-hash.js";
import { generateSecretsFor, type PasswordHasher, type UserSecrets } from "./user-secrets.js";
import type { UserInfo } from "./types.js";
import { deriveCramMd5Secret, deriveScramSha256, SCRAM_DEFAULT_ITERATIONS, SCRAM_SALT_BYTES } from "../sasl/secrets.js";
import type { CredentialKind, ScramShape, VerifyContext, VerifyResult } from "../sasl/types.js";

/** The mechanisms the built-in store keeps secrets for. */
export const USER_STORE_CREDENTIALS: readonly CredentialKind[] = ["password", "scram-sha-256", "cram-md5", "digest-md5"];

/** New secrets get these (an unknown login shows the same; docs/SECURITY.md 11.4). */
export function userStoreScramShape(scramIterations: number | undefined): ScramShape {
  return { iterations: scramIterations ?? SCRAM_DEFAULT_ITERATIONS, saltBytes: SCRAM_SALT_BYTES };
}

/**
 * A user's secrets for the store's realm (`hostname`). With `scram`, that salt and count are kept:
 * app passwords' SCRAM keys were derived with them.
 */
export function userStoreSecrets(
  password: string,
  address: string,
  store: { hostname: string; hasher: PasswordHasher; scramIterations: number | undefined },
  scram?: { salt: Buffer; iterations: number },
): Promise<UserSecrets> {
  return generateSecretsFor(password, address, store.hostname, {
    hasher: store.hasher,
    ...(store.scramIterations ? { scramIterations: store.scramIterations } : {}),
    ...(scram ? { scramSalt: scram.salt, scramIterations: scram.iterations } : {}),
  });
}

const MAX_ADDRESS_LENGTH = 254;

/** Trim, lower-case the domain, keep the local part; null when it is not a plain `local@domain`. */
export function normalizeAddress(input: string): string | null {
  const address = input.trim();
  const at = address.lastIndexOf("@");
  if (at <= 0 || at === address.length - 1 || address.length > MAX_ADDRESS_LENGTH) return null;
  if (address.indexOf("@") !== at || /[\s\u0000-\u001f\u007f"]/.test(address)) return null;
  return `${address.slice(0, at)}@${address.slice(at + 1).toLowerCase()}`;
}

/** normalizeAddress for the admin operations, where a bad address throws. */
/** What a web session remembers of the main password: a digest of its stored hash, never the hash. */
export function passwordStampOf(passwordHash: string): string {
  return createHash("sha256").update(passwordHash).digest("base64url");
}

export function requireAddress(address: string): string {
  const normalized = normalizeAddress(address);
  if (normalized === null) throw new Error(`not a valid address (full user@domain required): ${JSON.stringify(address)}`);
  return normalized;
}

/** A user row as lookups return it; `senders` is the stored JSON array (anything else: none). */
export function toUserInfo(row: { address: string; senders: unknown; disabled: boolean; relayClient: boolean }): UserInfo {
  return {
    address: row.address,
    senders: Array.isArray(row.senders) ? row.senders.filter((s): s is string => typeof s === "string") : [],
    disabled: row.disabled,
    ...(row.relayClient ? { relayClient: true } : {}),
  };
}

/** A sender entry is an address or a whole domain ("@example.net"). */
export function normalizeSender(entry: string): string {
  const trimmed = entry.trim();
  const normalized = trimmed.startsWith("@") ? normalizeAddress(`x${trimmed}`)?.slice(1) : normalizeAddress(trimmed);
  if (!normalized) throw new Error(`invalid sender entry: ${JSON.stringify(entry)}`);
  return normalized;
}

/** Lookups fold A-Z only (SQLite's NOCASE), so non-ASCII local parts match exactly. */
export const asciiLower = (text: string) => text.replace(/[A-Z]/g, (c) => c.toLowerCase());

/** What lookups match on: normalizeAddress (trim, domain lower-cased), then ASCII folding. */
export function userLoginKey(user: string): string {
  return asciiLower(normalizeAddress(user) ?? user.trim());
}

/** A blob of equal-sized per-form secrets, split; none when absent or of the wrong size. */
export function splitForms(blob: Buffer | null, size: number): Buffer[] {
  if (!blob || blob.length === 0 || blob.length % size !== 0) return [];
  const out: Buffer[] = [];
  for (let i = 0; i < blob.length; i += size) out.push(blob.subarray(i, i + size));
  return out;
}

/**
 * An app password's SCRAM-SHA-256 and CRAM-MD5 secrets: one per text the client may type (the
 * grouped form as shown, and the same without dashes). SCRAM uses the user's salt and count (the
 * server announces those before it knows which credential the client holds); none without them.
 */
export function appPasswordSecrets(shown: string, salt: Buffer | null, iterations: number | null): { scramKeys: Buffer | null; cramMd5: Buffer } {
  const forms = appPasswordForms(shown);
  const scramKeys =
    salt && iterations
      ? Buffer.concat(
          forms.flatMap((form) => {
            const keys = deriveScramSha256(form, salt, iterations);
            return [keys.storedKey, keys.serverKey];
          }),
        )
      : null;
  const cramMd5 = Buffer.concat(
    forms.flatMap((form) => {
      const state = deriveCramMd5Secret(form);
      return [state.outer, state.inner];
    }),
  );
  return { scramKeys, cramMd5 };
}

/** A login from the same address within this long does not rewrite last-used (one write a minute at most). */
const LAST_USED_RESOLUTION_MS = 60_000;

/** Whether a login with an app password last used at `lastUsedAt` from `lastUsedIp` is worth a write. */
export function appPasswordUseWorthRecording(lastUsedAt: string | null, lastUsedIp: string | null, ip: string | null, now: Date): boolean {
  const last = lastUsedAt === null ? Number.NaN : Date.parse(lastUsedAt);
  return !(lastUsedIp === ip && now.getTime() - last < LAST_USED_RESOLUTION_MS);
}

/** A user row as the password login needs it. */
export interface LoginRow {
  address: string;
  passwordHash: string;
  disabled: boolean;
  /** The main password may not log in (the user's setting, else auth.requireAppPasswords). */
  mainRefused: boolean;
}

/** An app password row as the login needs it. */
export interface LoginAppPassword {
  name: string;
  passwordHash: string;
  lastUsedAt: string | null;
  lastUsedIp: string | null;
}

export interface PasswordLoginStore {
  hasher: PasswordHasher;
  cache: CredentialCache | null;
  user(address: string): Promise<LoginRow | undefined>;
  appPasswordByLookupId(address: string, lookupId: string): Promise<LoginAppPassword | undefined>;
  /** Records last use; must never fail the login. */
  noteAppPasswordUse(address: string, app: LoginAppPassword, remoteIp: string | undefined): void;
}

/** One scrypt check through the cache (a success is remembered against `stored`, the hash itself). */
async function checkHash(store: PasswordLoginStore, address: string, password: string, stored: string, remember = true): Promise<boolean> {
  const { cache, hasher } = store;
  if (cache?.has(address, password, stored)) return true;
  const verify = () => hasher.verify(password, stored);
  const ok = cache ? await cache.verifyShared(address, password, stored, verify) : await verify();
  if (ok && remember) cache?.put(address, password, stored);
  return ok;
}

/**
 * PLAIN/LOGIN against the store. Never throws: a database problem is `backend-error`. Every login
 * costs one scrypt: a dummy one for unknown and disabled users; for a known user the app password
 * whose lookup id the password starts with, else the main password — however many app passwords
 * the user has.
 */
export async function verifyStoredPassword(store: PasswordLoginStore, user: string, password: string, context: VerifyContext = {}): Promise<VerifyResult> {
  try {
    const address = normalizeAddress(user);
    const row = address === null || password === "" ? undefined : await store.user(address);
    if (!row || row.disabled) {
      // Shared like a known user's check below, so concurrent identical guesses cost the same
      // for an unknown user as for a known one (SECURITY.md rule 14: no oracle).
      // Keyed by the login as lookups fold it, as a known user's check is by its row: spellings
      // of one unknown login share a hash exactly when those of a known login would.
      const dummy = () => store.hasher.verify(password, DUMMY_PASSWORD_HASH);
      await (store.cache ? store.cache.verifyShared(userLoginKey(user), password, DUMMY_PASSWORD_HASH, dummy) : dummy());
      return { ok: false, reason: "unknown-user" };
    }
    // A main password shaped like an app password whose id matches one of the user's is checked
    // against that app password only (a 1 in 36^4 chance per app password, for such a password).
    const appPassword = canonicalAppPassword(password);
    const app = appPassword === null ? undefined : await store.appPasswordByLookupId(row.address, appPasswordId(appPassword));
    if (app && appPassword !== null) {
      if (!(await checkHash(store, row.address, appPassword, app.passwordHash))) {
        return { ok: false, reason: "bad-password", detail: `app password ${JSON.stringify(app.name)}` };
      }
      store.noteAppPasswordUse(row.address, app, context.remoteIp);
      return { ok: true, user: row.address, credential: app.name };
    }
    // The main password is checked even when it is refused, so a refusal costs what a wrong guess does.
    if (!(await checkHash(store, row.address, password, row.passwordHash, !row.mainRefused))) return { ok: false, reason: "bad-password" };
    if (row.mainRefused) {
      return { ok: false, reason: "app-password-required", detail: "main password refused: this user logs in with app passwords only" };
    }
    return { ok: true, user: row.address };
  } catch {
    return { ok: false, reason: "backend-error", detail: "user database error" };
  }
}

/** One app password as `postern user app-password list` shows it; never its value. */
export interface AppPasswordInfo {
  name: string;
  createdAt: string;
  lastUsedAt: string | null;
  lastUsedIp: string | null;
}

type Awaitable<T> = T | Promise<T>;

/**
 * The admin operations of the built-in user store, on either backend: SQLite answers at once,
 * PostgreSQL with a promise, so callers always `await`. Addresses are normalised by the store;
 * an unknown user or a bad address throws (except where a boolean says "there was none").
 */
export interface UserStoreAdmin {
  lookupUser(address: string): Promise<UserInfo | null>;
  /** Changes whenever the main password does (a digest of its stored hash); null: no such user. */
  passwordStamp(address: string): Promise<string | null>;
  listUsers(): Awaitable<UserInfo[]>;
  addUser(address: string, password: string, opts?: { senders?: string[]; relayClient?: boolean; requireAppPasswords?: boolean }): Promise<void>;
  setPassword(address: string, password: string): Promise<void>;
  /** False when there was no such user. */
  deleteUser(address: string): Awaitable<boolean>;
  setSenders(address: string, senders: string[]): Awaitable<void>;
  setRelayClient(address: string, relayClient: boolean): Awaitable<void>;
  setDisabled(address: string, disabled: boolean): Awaitable<void>;
  /** `on`/`off` for this user, or null: auth.requireAppPasswords decides. */
  setRequireAppPasswords(address: string, required: boolean | null): Awaitable<void>;
  requiresAppPasswords(address: string): Awaitable<{ required: boolean; byDefault: boolean }>;
  /** A new app password for `name`: returned once, stored only as a hash. */
  addAppPassword(address: string, name: string): Promise<string>;
  listAppPasswords(address: string): Awaitable<AppPasswordInfo[]>;
  /** False when there is none of that name. Effective at once on every node. */
  revokeAppPassword(address: string, name: string): Awaitable<boolean>;
  close(): Awaitable<void>;
}
