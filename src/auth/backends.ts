/**
 * The credential backends behind one front: `auth.backend` picks the default, `auth.domains`
 * picks another per login domain. This decides which mechanisms are offered (from Dovecot's
 * handshake when Dovecot alone answers; otherwise those every configured backend can verify)
 * and creates a fresh mechanism object per AUTH attempt (SECURITY.md rule 12).
 */
import { DovecotAuthClient } from "./dovecot-client.js";
import { DovecotMechanism } from "./dovecot-mechanism.js";
import { PasswdFileStore } from "./passwd-file.js";
import { SaslauthdAuthenticator } from "./saslauthd.js";
import { PasswordOnlyAuthenticator } from "./password-only.js";
import type { Authenticator, UserInfo } from "./types.js";
import { createServerMechanism, findMechanism, mechanismRank, mechanismsFor } from "../sasl/index.js";
import { SCRAM_DEFAULT_ITERATIONS, SCRAM_SALT_BYTES } from "../sasl/secrets.js";
import type { CredentialKind, CredentialVerifier, SaslServerMechanism, SaslServerOptions, TokenResult, VerifyResult } from "../sasl/types.js";
import type { OAuthTokenVerifier } from "./oauth-tokens.js";
import type { InfoWarnLog } from "../base/log.js";

export type BackendName = "sqlite" | "passwd-file" | "dovecot" | "saslauthd";

export interface BackendConfig {
  backend: BackendName;
  path?: string;
  socket?: string;
  service: string;
  realm?: string;
  timeoutMs: number;
  /** dovecot: SCRAM server-firsts leave no sooner than this after the client-first (dovecot-mechanism.ts). */
  scramHoldMs?: number;
}

interface Backend {
  name: BackendName;
  auth: Authenticator;
  /** Set for `dovecot`: mechanisms are passed through to it. */
  dovecot?: DovecotAuthClient;
  scramHoldMs?: number;
}

/** Mechanisms never passed through from Dovecot: no identity, or not meaningful over SMTP here. */
const NOT_PASSED_THROUGH = new Set(["ANONYMOUS", "EXTERNAL"]);

/** A Dovecot backend verifying plaintext (PLAIN through Dovecot) when our own mechanisms drive. */
class DovecotVerifier extends PasswordOnlyAuthenticator {
  constructor(private readonly client: DovecotAuthClient) {
    super();
  }
  async verifyPassword(user: string, password: string): Promise<VerifyResult> {
    if (user === "" || password === "") return { ok: false, reason: "bad-password", detail: "empty user or password" };
    const step = await new DovecotMechanism("PLAIN", this.client, {}).start(Buffer.from(`\0${user}\0${password}`, "utf8"));
    if (step.kind === "success") return { ok: true, user: step.identity.authcid };
    if (step.kind === "failure" && step.reason === "backend-error") return { ok: false, reason: "backend-error", detail: step.detail };
    return { ok: false, reason: "bad-password", detail: step.kind === "failure" ? step.detail : "unexpected challenge" };
  }
  override close(): void {
    this.client.close();
  }
}

export interface AuthBackendsOptions {
  defaultBackend: BackendConfig;
  domains: Record<string, BackendConfig>;
  /** The SQLite user store (the `sqlite` backend, and the account directory for directory-less backends). */
  sqlite: Authenticator;
  /** Local domains: a bare login from saslauthd/Dovecot is `login@<first domain>` for sender checks. */
  localDomains: readonly string[];
  digestMd5: boolean;
  /** auth.oauth: bearer tokens (OAUTHBEARER, XOAUTH2) for logins any backend has an account for. */
  oauth?: OAuthTokenVerifier;
  log?: InfoWarnLog;
}

export class AuthBackends {
  private readonly fallback: Backend;
  private readonly byDomain = new Map<string, Backend>();
  /** Routes each call by the login's domain. */
  readonly verifier: CredentialVerifier;

  constructor(private readonly opts: AuthBackendsOptions) {
    this.fallback = this.build(opts.defaultBackend);
    for (const [domain, cfg] of Object.entries(opts.domains)) this.byDomain.set(domain.toLowerCase(), this.build(cfg));
    const route = (user: string) => this.backendFor(user).auth;
    this.verifier = {
      verifyPassword: (user, password, context) => route(user).verifyPassword(user, password, context),
      ...(opts.oauth ? { verifyToken: (token: string, claimedUser?: string) => this.verifyToken(opts.oauth!, token, claimedUser) } : {}),
      scramSha256: (user) => route(user).scramSha256(user),
      cramMd5: (user) => route(user).cramMd5(user),
      digestMd5: (user, realm) => route(user).digestMd5(user, realm),
      appPasswordUsed: (user, name, context) => route(user).appPasswordUsed?.(user, name, context),
      credentials: () => this.commonCredentials(),
      loginKey: (user) => route(user).loginKey?.(user) ?? user,
      hasUser: (user) => route(user).hasUser?.(user) ?? false,
      scramShape: (user) => route(user).scramShape?.(user) ?? { iterations: SCRAM_DEFAULT_ITERATIONS, saltBytes: SCRAM_SALT_BYTES },
    };
  }

  private build(cfg: BackendConfig): Backend {
    switch (cfg.backend) {
      case "sqlite":
        return { name: "sqlite", auth: this.opts.sqlite };
      case "passwd-file":
        return { name: "passwd-file", auth: new PasswdFileStore({ path: cfg.path!, ...(this.opts.log ? { log: this.opts.log } : {}) }) };
      case "saslauthd":
        return {
          name: "saslauthd",
          auth: new SaslauthdAuthenticator({ socket: cfg.socket!, service: cfg.service, realm: cfg.realm, timeoutMs: cfg.timeoutMs, log: this.opts.log }),
        };
      case "dovecot": {
        const client = new DovecotAuthClient({ socket: cfg.socket!, service: cfg.service, timeoutMs: cfg.timeoutMs, log: this.opts.log });
        client.start(); // in the background: never blocks start-up (SECURITY.md rule 15)
        return { name: "dovecot", auth: new DovecotVerifier(client), dovecot: client, scramHoldMs: cfg.scramHoldMs ?? 0 };
      }
    }
  }

  /** By the login's domain, trimmed as every store trims: " a@example.net " goes where "a@example.net" goes. */
  private backendFor(login: string): Backend {
    const name = login.trim();
    const at = name.lastIndexOf("@");
    if (at < 0) return this.fallback;
    return this.byDomain.get(name.slice(at + 1).toLowerCase()) ?? this.fallback;
  }

  private all(): Backend[] {
    return [this.fallback, ...this.byDomain.values()];
  }

  /** Dovecot answers every login: its mechanisms are passed through. */
  private get passThrough(): DovecotAuthClient | undefined {
    return this.byDomain.size === 0 ? this.fallback.dovecot : undefined;
  }

  /** The credential kinds every backend can serve (so any user's login can work); tokens when an issuer is configured. */
  private commonCredentials(): CredentialKind[] {
    const [first, ...rest] = this.all().map((b) => new Set(b.auth.credentials()));
    const kinds = [...first!].filter((kind) => rest.every((s) => s.has(kind)));
    return this.opts.oauth ? [...kinds, "bearer-token"] : kinds;
  }

  /** The issuer vouches for the token; the login must still be an account here, and not disabled. */
  private async verifyToken(oauth: OAuthTokenVerifier, token: string, claimedUser?: string): Promise<TokenResult> {
    const result = await oauth.verify(token, claimedUser);
    const scope = oauth.scope === undefined ? {} : { scope: oauth.scope };
    if (!result.ok) return { ...result, ...scope };
    const account = await this.account(result.user);
    if (!account || account.disabled)
      return { ok: false, reason: "unknown-user", detail: account ? "account disabled" : "no account for the token's login", user: result.user, ...scope };
    return result;
  }

  /** Opt-in mechanisms the configuration turned on (DIGEST-MD5: smtp.digestMd5). */
  private get optIn(): string[] {
    return this.opts.digestMd5 ? ["DIGEST-MD5"] : [];
  }

  /** Our mechanisms that every backend can verify, strongest first. */
  private commonMechanisms(channelBound: boolean): string[] {
    return mechanismsFor(this.commonCredentials(), this.optIn, channelBound);
  }

  /** Offered right now, strongest first; SCRAM -PLUS only when `channelBound` (a TLS 1.3 connection). */
  mechanisms(channelBound = false): string[] {
    const dovecot = this.passThrough;
    if (dovecot) {
      // Our order (strongest first) for the mechanisms we know, then any others Dovecot offers.
      const optIn = this.optIn;
      return dovecot
        .mechanisms()
        .filter((m) => !NOT_PASSED_THROUGH.has(m) && (!findMechanism(m)?.optIn || optIn.includes(m)))
        .sort((a, b) => mechanismRank(a) - mechanismRank(b));
    }
    return this.commonMechanisms(channelBound);
  }

  /** `context.login` hears each login a passed-through exchange names (throws to refuse it). */
  createMechanism(
    name: string,
    context: { remoteIp?: string; login?(user: string): void | Promise<void> },
    sasl: Omit<SaslServerOptions, "verifier">,
    verifier?: CredentialVerifier,
  ): SaslServerMechanism | null {
    const upper = name.toUpperCase();
    if (!this.mechanisms(sasl.channelBinding?.() != null).includes(upper)) return null;
    const dovecot = this.passThrough;
    if (dovecot) {
      return new DovecotMechanism(upper, dovecot, { ...context, fakeSaltKey: sasl.fakeSaltKey, scramHoldMs: this.fallback.scramHoldMs ?? 0 });
    }
    return createServerMechanism(upper, { ...sasl, verifier: verifier ?? this.verifier });
  }

  /** A local mailbox (for recipients and accounts): from the passwd-file, else the SQLite store. */
  async lookupUser(address: string): Promise<UserInfo | null> {
    const backend = this.backendFor(address);
    if (backend.name === "passwd-file") return backend.auth.lookupUser(address);
    return this.opts.sqlite.lookupUser(address);
  }

  /**
   * The account behind a login that authenticated. Dovecot and saslauthd vouch for logins they
   * keep no directory of: such a login owns its own address (a bare name: at the first local domain).
   */
  async account(login: string): Promise<UserInfo | null> {
    const known = await this.lookupUser(login);
    if (known) return known;
    const name = this.backendFor(login).name;
    if (name !== "dovecot" && name !== "saslauthd") return null;
    const address = login.includes("@") ? login : `${login}@${this.opts.localDomains[0]}`;
    return { address, senders: [], disabled: false };
  }

  /** For tests and `postern check`: resolves when every Dovecot backend finished its handshake. */
  async ready(): Promise<void> {
    await Promise.all(this.all().map((b) => b.dovecot?.whenReady()));
  }

  close(): void {
    for (const b of this.all()) if (b.auth !== this.opts.sqlite) b.auth.close();
  }
}
