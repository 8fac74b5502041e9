/**
 * DIGEST-MD5 (RFC 2831), qop=auth only: no integrity or confidentiality layers. Historic (RFC 6331)
 * and disabled by default at the server level; here for old clients.
 *
 *   S: realm="host",nonce="…",qop="auth",charset=utf-8,algorithm=md5-sess
 *   C: username="…",realm="host",nonce="…",cnonce="…",nc=00000001,qop=auth,digest-uri="smtp/host",response=<hex>
 *   S: rspauth=<hex>       (as a challenge: SMTP has no "success with data", RFC 4954 §4)
 *   C: (empty)             → success
 */
import { createHash, randomBytes } from "node:crypto";
import { deriveDigestMd5Ha1 } from "./secrets.js";
import { askStore, missingSecretReason, resolveIdentity } from "./server-support.js";
import { ALREADY_FINISHED, challenge, decodeUtf8, failure, hasControlChars, randomNonce, safeEqual } from "./text.js";
import type { MechanismDescriptor, SaslClientCredentials, SaslClientMechanism, SaslServerMechanism, SaslServerOptions, SaslServerStep } from "./types.js";

const NAME = "DIGEST-MD5";
const MAX_RESPONSE_BYTES = 4096; // RFC 2831 §2.1.2: a digest-response is under 4096 bytes
const TOKEN_CHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/; // RFC 2616 §2.2 token
const FORBIDDEN_CONTROLS = /[\u0000-\u0008\u000a-\u001f\u007f]/;

/**
 * Parse a comma-separated `name=value` list (RFC 2831 §7.2 #rule; value is a token or a
 * quoted-string with backslash escapes). Names are lower-cased. Null when malformed.
 */
export function parseDigestDirectives(text: string): Map<string, string[]> | null {
  if (FORBIDDEN_CONTROLS.test(text)) return null;
  const out = new Map<string, string[]>();
  const len = text.length;
  let i = 0;
  const skipSpace = () => {
    while (text[i] === " " || text[i] === "\t") i++;
  };
  const readToken = () => {
    const start = i;
    while (i < len && TOKEN_CHAR.test(text[i]!)) i++;
    return text.slice(start, i);
  };
  for (;;) {
    skipSpace();
    const name = readToken().toLowerCase();
    if (name === "") return null;
    skipSpace();
    if (text[i++] !== "=") return null;
    skipSpace();
    let value = "";
    if (text[i] === '"') {
      for (i++; ; i++) {
        if (i >= len) return null;
        if (text[i] === '"') {
          i++;
          break;
        }
        if (text[i] === "\\") i++;
        if (i >= len) return null;
        value += text[i];
      }
    } else {
      value = readToken();
      if (value === "") return null;
    }
    out.set(name, [...(out.get(name) ?? []), value]);
    skipSpace();
    if (i === len) return out;
    if (text[i++] !== ",") return null;
  }
}

export function quoteDigestValue(value: string): string {
  return `"${value.replace(/["\\]/g, "\\$&")}"`;
}

export interface DigestResponseParams {
  /** H(user:realm:password), 16 bytes. */
  ha1: Buffer;
  nonce: string;
  cnonce: string;
  nc: string;
  digestUri: string;
  authzid?: string;
}

const md5Hex = (data: Buffer | string) => createHash("md5").update(data).digest("hex");

/**
 * RFC 2831 §2.1.2.1: the `response` value (a2Prefix "AUTHENTICATE") or, for the server's
 * `rspauth` (§2.1.3), a2Prefix "". A1 = HA1 ":" nonce ":" cnonce [":" authzid] (md5-sess).
 */
export function digestMd5ResponseValue(p: DigestResponseParams, a2Prefix: "AUTHENTICATE" | ""): string {
  const a1 = Buffer.concat([p.ha1, Buffer.from(`:${p.nonce}:${p.cnonce}${p.authzid ? `:${p.authzid}` : ""}`, "utf8")]);
  const a2 = `${a2Prefix}:${p.digestUri}`;
  return md5Hex(`${md5Hex(a1)}:${p.nonce}:${p.nc}:${p.cnonce}:auth:${md5Hex(a2)}`);
}

const DUMMY_HA1 = randomBytes(16);

export interface DigestMd5ServerTestHooks {
  nonce?: string;
  /** Service name in digest-uri; "smtp" unless a test replays another protocol's example. */
  service?: string;
}

export class DigestMd5Server implements SaslServerMechanism {
  readonly name = NAME;
  private state: "new" | "awaiting-response" | "awaiting-store" | "awaiting-ack" | "done" = "new";
  private readonly nonce: string;
  private readonly service: string;
  private success: SaslServerStep | null = null;

  constructor(
    private readonly opts: SaslServerOptions,
    hooks: DigestMd5ServerTestHooks = {},
  ) {
    this.nonce = hooks.nonce ?? randomNonce(24);
    this.service = hooks.service ?? "smtp";
  }

  async start(initial: Buffer | null): Promise<SaslServerStep> {
    if (this.state !== "new") return this.end(ALREADY_FINISHED);
    if (initial !== null) return this.end(failure("malformed", "DIGEST-MD5 takes no initial response"));
    this.state = "awaiting-response";
    const realm = quoteDigestValue(this.opts.hostname);
    return challenge(`realm=${realm},nonce=${quoteDigestValue(this.nonce)},qop="auth",charset=utf-8,algorithm=md5-sess`);
  }

  async step(response: Buffer): Promise<SaslServerStep> {
    if (this.state === "awaiting-response") return this.onResponse(response);
    if (this.state === "awaiting-ack") {
      return this.end(response.length === 0 && this.success ? this.success : failure("malformed", "expected empty response after rspauth"));
    }
    return this.end(ALREADY_FINISHED);
  }

  private async onResponse(response: Buffer): Promise<SaslServerStep> {
    this.state = "done";
    const text = response.length < MAX_RESPONSE_BYTES ? decodeUtf8(response) : null;
    const directives = text === null ? null : parseDigestDirectives(text);
    if (!directives) return failure("malformed", "DIGEST-MD5 response does not parse");
    if ([...directives.values()].some((values) => values.length > 1)) return failure("malformed", "DIGEST-MD5 repeated directive");
    const get = (name: string) => directives.get(name)?.[0];

    const username = get("username"),
      digestUri = get("digest-uri"),
      cnonce = get("cnonce");
    const authzid = get("authzid"),
      responseHex = get("response") ?? "";
    const expectedUri = `${this.service}/${this.opts.hostname}`.toLowerCase();
    const problem =
      !username || hasControlChars(username)
        ? "bad username"
        : get("realm") !== this.opts.hostname
          ? "realm must be the one offered"
          : get("nonce") !== this.nonce
            ? "nonce mismatch"
            : !cnonce
              ? "missing cnonce"
              : get("nc") !== "00000001"
                ? "nonce count must be 00000001"
                : (get("qop") ?? "auth") !== "auth"
                  ? "only qop=auth is offered"
                  : (get("charset") ?? "utf-8").toLowerCase() !== "utf-8"
                    ? "bad charset"
                    : directives.has("cipher")
                      ? "cipher without auth-conf"
                      : digestUri?.toLowerCase() !== expectedUri
                        ? "digest-uri must be service/hostname"
                        : authzid !== undefined && (authzid === "" || hasControlChars(authzid))
                          ? "bad authzid"
                          : !/^[0-9a-f]{32}$/.test(responseHex)
                            ? "bad response value"
                            : null;
    if (problem !== null) return failure("malformed", `DIGEST-MD5: ${problem}`);

    this.state = "awaiting-store";
    const stored = await askStore(() => this.opts.verifier.digestMd5(username!, this.opts.hostname));
    if (this.state !== "awaiting-store") return ALREADY_FINISHED; // a step() arrived meanwhile and ended us
    this.state = "done";
    if (!stored.ok) return stored.step;
    const params: DigestResponseParams = {
      ha1: stored.value ?? DUMMY_HA1,
      nonce: this.nonce,
      cnonce: cnonce!,
      nc: "00000001",
      digestUri: digestUri!,
      ...(authzid ? { authzid } : {}),
    };
    const matches = safeEqual(Buffer.from(digestMd5ResponseValue(params, "AUTHENTICATE")), Buffer.from(responseHex));
    if (stored.value === null) return failure(missingSecretReason(this.opts.verifier, "digest-md5", username!));
    if (!matches) return failure("bad-password");

    const outcome = resolveIdentity(this.opts, username!, username!, authzid ?? "");
    if (outcome.kind !== "success") return outcome;
    this.success = outcome;
    this.state = "awaiting-ack";
    return challenge(`rspauth=${digestMd5ResponseValue(params, "")}`);
  }

  private end(step: SaslServerStep): SaslServerStep {
    this.state = "done";
    return step;
  }
}

export interface DigestMd5ClientOptions {
  /** Host part of digest-uri; defaults to the realm the server offered. */
  serverHostname?: string;
  service?: string;
  /** Fixed cnonce, for RFC test vectors only. */
  cnonce?: string;
}

export class DigestMd5Client implements SaslClientMechanism {
  readonly name = NAME;
  private state: "new" | "sent-response" | "done" = "new";
  private expectedRspauth = "";

  constructor(
    private readonly creds: SaslClientCredentials,
    private readonly options: DigestMd5ClientOptions = {},
  ) {}

  initial(): null {
    return null;
  }

  respond(challengeData: Buffer): Buffer {
    const directives = parseDigestDirectives(challengeData.toString("utf8"));
    if (!directives) throw new Error("DIGEST-MD5: malformed server challenge");
    if (this.state === "new") return this.onChallenge(directives);
    if (this.state === "sent-response") {
      this.state = "done";
      const rspauth = directives.get("rspauth");
      if (rspauth?.length !== 1 || !safeEqual(Buffer.from(rspauth[0]!), Buffer.from(this.expectedRspauth))) {
        throw new Error("DIGEST-MD5: server rspauth mismatch");
      }
      return Buffer.alloc(0);
    }
    throw new Error("DIGEST-MD5: unexpected server challenge");
  }

  private onChallenge(directives: Map<string, string[]>): Buffer {
    this.state = "done";
    const nonce = directives.get("nonce");
    const qops = (directives.get("qop") ?? ["auth"])
      .join(",")
      .split(",")
      .map((qop) => qop.trim());
    if (nonce?.length !== 1 || !qops.includes("auth")) throw new Error("DIGEST-MD5: challenge lacks nonce or qop=auth");
    if (directives.get("algorithm")?.[0] !== "md5-sess") throw new Error("DIGEST-MD5: algorithm must be md5-sess");
    const realm = directives.get("realm")?.[0] ?? this.options.serverHostname ?? "";
    const digestUri = `${this.options.service ?? "smtp"}/${this.options.serverHostname ?? realm}`;
    const { username, password, authzid } = this.creds;
    const params: DigestResponseParams = {
      ha1: deriveDigestMd5Ha1(username, realm, password),
      nonce: nonce[0]!,
      cnonce: this.options.cnonce ?? randomNonce(),
      nc: "00000001",
      digestUri,
      ...(authzid ? { authzid } : {}),
    };
    this.expectedRspauth = digestMd5ResponseValue(params, "");
    this.state = "sent-response";
    const fields = [
      "charset=utf-8",
      `username=${quoteDigestValue(username)}`,
      `realm=${quoteDigestValue(realm)}`,
      `nonce=${quoteDigestValue(params.nonce)}`,
      "nc=00000001",
      `cnonce=${quoteDigestValue(params.cnonce)}`,
      `digest-uri=${quoteDigestValue(digestUri)}`,
      `response=${digestMd5ResponseValue(params, "AUTHENTICATE")}`,
      "qop=auth",
      ...(authzid ? [`authzid=${quoteDigestValue(authzid)}`] : []),
    ];
    return Buffer.from(fields.join(","), "utf8");
  }
}

/** RFC 2831, historic (RFC 6331): offered only when smtp.digestMd5 turns it on. */
export const DIGEST_MD5: MechanismDescriptor = {
  name: NAME,
  needs: "digest-md5",
  plaintext: false,
  optIn: true,
  createServer: (opts) => new DigestMd5Server(opts),
  createClient: (creds, options) => new DigestMd5Client(creds, options.serverHostname ? { serverHostname: options.serverHostname } : {}),
  loginInFirstMessage: (message) => {
    const text = decodeUtf8(message);
    return (text === null ? null : parseDigestDirectives(text))?.get("username")?.[0];
  },
};
