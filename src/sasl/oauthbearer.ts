/**
 * OAUTHBEARER (RFC 7628): one client message, a GS2 header then key=value pairs separated by
 * %x01, carrying `auth=Bearer <token>`. The token is checked by the verifier (verifyToken); on
 * failure the server sends the §3.2.2 JSON error as a challenge, the client answers %x01, and the
 * exchange fails. The token is never put in a failure detail (details are logged).
 */
import { ALREADY_FINISHED, challenge, decodeUtf8, failure } from "./text.js";
import type {
  MechanismDescriptor,
  SaslClientCredentials,
  SaslClientMechanism,
  SaslFailureReason,
  SaslServerMechanism,
  SaslServerOptions,
  SaslServerStep,
  TokenResult,
} from "./types.js";

const KVSEP = "\x01";
/** RFC 6750 §2.1 b64token after the (case-insensitive) scheme name. */
const BEARER = /^bearer +([A-Za-z0-9\-._~+/]+=*)$/i;
const KEY = /^[A-Za-z]+$/;
/** RFC 7628 §3.1 value: VCHAR, SP, HTAB, CR, LF. */
const VALUE = /^[\x20-\x7e\t\r\n]*$/;

export interface BearerMessage {
  /** The user the client names (a=, user=); "" when none. */
  user: string;
  token: string;
}

/** The token in an `auth` value, or null when it is not `Bearer <b64token>`. */
export function bearerToken(auth: string): string | null {
  return BEARER.exec(auth)?.[1] ?? null;
}

/** RFC 5801 saslname: "," and "=" only as =2C and =3D. Null when malformed. */
function unescapeSaslname(text: string): string | null {
  if (/=(?!2C|3D)/.test(text)) return null;
  return text.replace(/=2C/g, ",").replace(/=3D/g, "=");
}

/**
 * Parse strictly (RFC 7628 §3.1): `n,` or `y,` (no channel binding: `p=` is refused), an optional
 * `a=` authzid, `,`, then %x01, key=value pairs each ended by %x01, and a final %x01. Keys appear
 * once; `auth` is required; others (host, port, …) are allowed and ignored. Null when malformed.
 */
export function parseOAuthBearerMessage(message: Buffer): BearerMessage | null {
  const text = decodeUtf8(message);
  if (text === null || !text.endsWith(KVSEP + KVSEP)) return null;
  const headerEnd = text.indexOf(KVSEP);
  const header = /^[ny],(?:a=([^,]+))?,$/.exec(text.slice(0, headerEnd));
  if (!header) return null;
  const user = header[1] === undefined ? "" : unescapeSaslname(header[1]);
  if (user === null || /[\x00-\x1f\x7f]/.test(user)) return null;
  const pairs = text.slice(headerEnd + 1, -1).split(KVSEP);
  if (pairs.pop() !== "") return null; // each pair ends with %x01
  const seen = new Map<string, string>();
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq < 0) return null;
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (!KEY.test(key) || !VALUE.test(value) || seen.has(key)) return null;
    seen.set(key, value);
  }
  const auth = seen.get("auth");
  const token = auth === undefined ? null : bearerToken(auth);
  return token === null ? null : { user, token };
}

export function encodeOAuthBearerMessage(user: string, token: string): Buffer {
  const authzid = user === "" ? "" : `a=${user.replace(/=/g, "=3D").replace(/,/g, "=2C")}`;
  return Buffer.from(`n,${authzid},${KVSEP}auth=Bearer ${token}${KVSEP}${KVSEP}`, "utf8");
}

/** How a bearer mechanism reads its message and words its error challenge. */
export interface BearerDialect {
  name: string;
  parse(message: Buffer): BearerMessage | null;
  malformedDetail: string;
  /** The JSON error challenge sent before the failure. */
  errorChallenge(scope: string | undefined): string;
  /** The client's answer to the error challenge is acceptable (only the failure follows either way). */
  acceptsErrorAnswer(response: Buffer): boolean;
}

/** The server side shared by OAUTHBEARER and XOAUTH2: verify, or send the error challenge, then fail. */
export class BearerServer implements SaslServerMechanism {
  private state: "new" | "awaiting-message" | "error-sent" | "done" = "new";
  private pending: { reason: SaslFailureReason; detail?: string } | undefined;

  constructor(
    private readonly dialect: BearerDialect,
    private readonly opts: SaslServerOptions,
  ) {}

  get name(): string {
    return this.dialect.name;
  }

  async start(initial: Buffer | null): Promise<SaslServerStep> {
    if (this.state !== "new") return this.end(ALREADY_FINISHED);
    if (initial === null) {
      this.state = "awaiting-message";
      return challenge(Buffer.alloc(0));
    }
    return this.verify(initial);
  }

  async step(response: Buffer): Promise<SaslServerStep> {
    if (this.state === "awaiting-message") return this.verify(response);
    if (this.state === "error-sent" && this.pending) {
      const { reason, detail } = this.pending;
      this.state = "done";
      if (!this.dialect.acceptsErrorAnswer(response)) return failure(reason, `${detail ?? reason}; the client did not acknowledge the error`);
      return failure(reason, detail);
    }
    return this.end(ALREADY_FINISHED);
  }

  private async verify(message: Buffer): Promise<SaslServerStep> {
    this.state = "done";
    const parsed = this.dialect.parse(message);
    if (!parsed) return failure("malformed", this.dialect.malformedDetail);
    const verifyToken = this.opts.verifier.verifyToken;
    if (!verifyToken) return failure("mechanism-unavailable", "no token issuer configured");
    let result: TokenResult;
    try {
      result = await verifyToken.call(this.opts.verifier, parsed.token, parsed.user);
    } catch {
      return failure("backend-error", "token check failed");
    }
    if (result.ok) return { kind: "success", identity: { authcid: result.user, authzid: result.user } };
    // A temporary failure is a 454 at once: the client should retry later, not drop its token.
    if (result.reason === "backend-error") return failure("backend-error", result.detail);
    this.state = "error-sent";
    this.pending = result.detail === undefined ? { reason: result.reason } : { reason: result.reason, detail: result.detail };
    return challenge(this.dialect.errorChallenge(result.scope));
  }

  private end(step: SaslServerStep): SaslServerStep {
    this.state = "done";
    return step;
  }
}

const OAUTHBEARER_DIALECT: BearerDialect = {
  name: "OAUTHBEARER",
  parse: parseOAuthBearerMessage,
  malformedDetail: "OAUTHBEARER message is not gs2-header %x01 kvpairs %x01 with auth=Bearer",
  // RFC 7628 §3.2.2: status, and the scope a new token needs.
  errorChallenge: (scope) => JSON.stringify({ status: "invalid_token", schemes: "bearer", ...(scope ? { scope } : {}) }),
  // §3.2.3: the client answers the error with a single %x01.
  acceptsErrorAnswer: (response) => response.length === 1 && response[0] === 1,
};

/** The client: `username` (optional) as a=, `password` as the bearer token. */
export class OAuthBearerClient implements SaslClientMechanism {
  readonly name = "OAUTHBEARER";
  private sent = false;

  constructor(private readonly creds: SaslClientCredentials) {}

  initial(): Buffer {
    this.sent = true;
    return encodeOAuthBearerMessage(this.creds.authzid ?? this.creds.username, this.creds.password);
  }

  /** An empty challenge asks for the message; anything after it is the error JSON, answered by %x01. */
  respond(challengeData: Buffer): Buffer {
    if (!this.sent && challengeData.length === 0) return this.initial();
    return Buffer.from([1]);
  }
}

/** RFC 7628: a bearer token from an OAuth issuer; sent in the clear, so TLS only. */
export const OAUTHBEARER: MechanismDescriptor = {
  name: "OAUTHBEARER",
  needs: "bearer-token",
  plaintext: true,
  createServer: (opts) => new BearerServer(OAUTHBEARER_DIALECT, opts),
  createClient: (creds) => new OAuthBearerClient(creds),
  loginInFirstMessage: (message) => parseOAuthBearerMessage(message)?.user || undefined,
};
