/**
 * Bearer tokens (OAUTHBEARER, XOAUTH2) checked offline as JWTs against an OIDC issuer's keys:
 * the discovery document (`<issuer>/.well-known/openid-configuration`) names the JWKS, which jose
 * caches and fetches again when a token names an unknown `kid`. Both are fetched over HTTPS with a
 * verified certificate (`caFile` adds a trusted CA). The token itself is never logged.
 */
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { rootCertificates } from "node:tls";
import { createRemoteJWKSet, customFetch, errors, jwtVerify, type JWTPayload } from "jose";
import type { TokenResult } from "../sasl/types.js";

export interface OAuthConfig {
  issuer: string;
  audience: string;
  /** A scope the token must carry (`scope` space-separated, or a `scp` array). */
  scope?: string;
  /** The claim holding the login (an address), lower-cased. */
  claim: string;
  /** Skips discovery when set. */
  jwksUri?: string;
  /** PEM file of CAs trusted for the issuer's HTTPS (besides the system's). */
  caFile?: string;
  /** Seconds between fetches caused by unknown `kid`s (a flood of forged kids cannot hammer the issuer). */
  keysRefreshCooldownSec?: number;
}

/** Asymmetric only: never `none`, never HS* (a public key must not act as an HMAC secret). */
const ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"];
const FETCH_LIMIT_BYTES = 512 * 1024;
const FETCH_TIMEOUT_MS = 5000;

type Get = (url: string, signal?: AbortSignal) => Promise<{ status: number; body: string }>;

function httpsGetter(ca: string | undefined): Get {
  return (url, signal) =>
    new Promise((resolve, reject) => {
      const u = new URL(url);
      if (u.protocol !== "https:") return reject(new Error(`not an https URL: ${url}`));
      const req = request(
        u,
        { method: "GET", headers: { accept: "application/json" }, timeout: FETCH_TIMEOUT_MS, ...(signal ? { signal } : {}), ...(ca ? { ca } : {}) },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => {
            body += d;
            if (body.length > FETCH_LIMIT_BYTES) req.destroy(new Error("response too large"));
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error("timed out")));
      req.on("error", reject);
      req.end();
    });
}

/** A token's scopes: OAuth `scope` (space-separated) or the `scp` array some issuers use. */
function scopesOf(payload: JWTPayload): string[] {
  const scopes: string[] = [];
  if (typeof payload.scope === "string") scopes.push(...payload.scope.split(" ").filter(Boolean));
  if (Array.isArray(payload.scp)) scopes.push(...payload.scp.filter((s): s is string => typeof s === "string"));
  else if (typeof payload.scp === "string") scopes.push(...payload.scp.split(" ").filter(Boolean));
  return scopes;
}

export class OAuthTokenVerifier {
  private readonly get: Get;
  private keys: ReturnType<typeof createRemoteJWKSet> | undefined;
  private keysPending: Promise<ReturnType<typeof createRemoteJWKSet>> | undefined;

  constructor(private readonly config: OAuthConfig) {
    const ca = config.caFile ? readCaFile(config.caFile) : undefined;
    // The system's CAs stay trusted next to the extra one.
    this.get = httpsGetter(ca === undefined ? undefined : [...rootCertificates, ca].join("\n"));
  }

  /** The scope the error challenge names (RFC 7628 §3.2.2). */
  get scope(): string | undefined {
    return this.config.scope;
  }

  private async jwks(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    if (this.keys) return this.keys;
    this.keysPending ??= this.discover().finally(() => (this.keysPending = undefined));
    return this.keysPending;
  }

  private async discover(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    let uri = this.config.jwksUri;
    if (!uri) {
      const url = `${this.config.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
      const res = await this.get(url);
      if (res.status !== 200) throw new Error(`discovery answered ${res.status}`);
      const doc = JSON.parse(res.body) as { jwks_uri?: unknown; issuer?: unknown };
      if (typeof doc.jwks_uri !== "string") throw new Error("discovery document has no jwks_uri");
      // OpenID Connect Discovery §4.3: the document must name the issuer it was fetched for.
      if (doc.issuer !== undefined && doc.issuer !== this.config.issuer) throw new Error("discovery document names another issuer");
      uri = doc.jwks_uri;
    }
    const get = this.get;
    this.keys = createRemoteJWKSet(new URL(uri), {
      cooldownDuration: (this.config.keysRefreshCooldownSec ?? 30) * 1000,
      [customFetch]: async (url, options) => {
        const res = await get(url, options.signal);
        return new Response(res.body, { status: res.status, headers: { "content-type": "application/json" } });
      },
    });
    return this.keys;
  }

  /** Verify the token; `claimedUser` (the a= / user= of the SASL message) must be the token's login. */
  async verify(token: string, claimedUser?: string): Promise<TokenResult> {
    let keys: ReturnType<typeof createRemoteJWKSet>;
    try {
      keys = await this.jwks();
    } catch (err) {
      return { ok: false, reason: "backend-error", detail: `issuer keys unavailable: ${(err as Error).message}` };
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: this.config.issuer,
        audience: this.config.audience,
        algorithms: ALGORITHMS,
        requiredClaims: ["exp"],
      }));
    } catch (err) {
      // The keys could not be fetched (network, certificate, not a JWKS): a temporary failure.
      if (
        !(err instanceof errors.JOSEError) ||
        err instanceof errors.JWKSTimeout ||
        err instanceof errors.JWKSInvalid ||
        err.constructor === errors.JOSEError
      ) {
        return { ok: false, reason: "backend-error", detail: "issuer keys unavailable" };
      }
      // A signed token that failed a claim check still says whose it was: count against that login.
      const claimed = err instanceof errors.JWTClaimValidationFailed || err instanceof errors.JWTExpired ? this.login(err.payload) : undefined;
      return { ok: false, reason: "bad-token", detail: tokenFailure(err), ...(claimed ? { user: claimed } : {}) };
    }
    if (this.config.scope && !scopesOf(payload).includes(this.config.scope)) return { ok: false, reason: "bad-token", detail: "required scope missing" };
    const login = this.login(payload);
    if (!login) return { ok: false, reason: "bad-token", detail: `claim ${this.config.claim} missing` };
    if (claimedUser !== undefined && claimedUser !== "" && claimedUser.trim().toLowerCase() !== login) {
      return { ok: false, reason: "bad-token", detail: "token is for another user than the one named", user: login };
    }
    return { ok: true, user: login };
  }

  private login(payload: JWTPayload): string | undefined {
    const value = payload[this.config.claim];
    return typeof value === "string" && value.trim() !== "" ? value.trim().toLowerCase() : undefined;
  }
}

function readCaFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`auth.oauth.caFile: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** Fixed text for the log (never the token or its claims). */
function tokenFailure(err: unknown): string {
  if (err instanceof errors.JWTExpired) return "token expired";
  if (err instanceof errors.JWTClaimValidationFailed) return `claim check failed: ${err.claim}`;
  if (err instanceof errors.JWKSNoMatchingKey) return "no issuer key matches the token";
  if (err instanceof errors.JOSEAlgNotAllowed) return "algorithm not allowed";
  if (err instanceof errors.JWSSignatureVerificationFailed) return "signature invalid";
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return "not a valid JWT";
  if (err instanceof errors.JOSEError) return err.code;
  return "token check failed";
}
