/**
 * SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802 with RFC 7677's hash), server and client. -PLUS
 * binds to the TLS connection with `tls-exporter` (RFC 9266, TLS 1.3 only): c= carries the gs2
 * header and the exported keying material, so a relay between two TLS connections fails. Where
 * -PLUS is offered, plain SCRAM with "y" (client could bind, thinks we cannot) is a downgrade and
 * refused (RFC 5802 §6); without an offer "y" is accepted; "p=" is for -PLUS only.
 *
 *   C: n,[a=authzid],n=user,r=cnonce                 client-first (gs2 header + bare)
 *   S: r=cnonce+snonce,s=salt,i=iterations           server-first
 *   C: c=base64(gs2 header),r=nonce,p=proof          client-final
 *   S: v=server-signature                            server-final, as a *challenge* (RFC 4954 §4)
 *   C: (empty)                                       → success
 */
import { randomBytes } from "node:crypto";
import { hmacSha256, scramSaltedPassword, sha256, SCRAM_DEFAULT_ITERATIONS, SCRAM_SALT_BYTES } from "./secrets.js";
import { askStore, identityFor, missingSecretReason, whichCredential } from "./server-support.js";
import { ALREADY_FINISHED, challenge, decodeBase64Strict, decodeUtf8, failure, hasControlChars, randomNonce, safeEqual, xorBuffers } from "./text.js";
import type {
  CredentialVerifier,
  MechanismDescriptor,
  SaslClientCredentials,
  SaslClientMechanism,
  SaslServerMechanism,
  SaslServerOptions,
  SaslServerStep,
  ScramCredentials,
  ScramKeys,
} from "./types.js";

const NAME = "SCRAM-SHA-256";
const NAME_PLUS = "SCRAM-SHA-256-PLUS";
/** The one channel binding type we support (RFC 9266). */
export const TLS_EXPORTER = "tls-exporter";
/** RFC 5056 §7 cb-name: 1*(ALPHA / DIGIT / "." / "-"). */
const CB_NAME = /^[A-Za-z0-9.-]+$/;
/** RFC 5802 §7 "printable": %x21-2B / %x2D-7E (no comma). */
const PRINTABLE_NONCE = /^[\x21-\x2b\x2d-\x7e]+$/;
/** An optional extension attribute: one letter, "=", a value without commas (RFC 5802 §7 attr-val). */
const EXTENSION = /^[A-Za-z]=/;
/** Bounds for the client: below RFC 7677 §4's floor is weak, far above it is a CPU trap. */
const CLIENT_MIN_ITERATIONS = 4096;
const CLIENT_MAX_ITERATIONS = 1_000_000;

/** RFC 5802 §5.1: "," and "=" in names travel as "=2C" and "=3D"; any other "=" is an error. */
export function encodeSaslName(name: string): string {
  return name.replace(/=/g, "=3D").replace(/,/g, "=2C");
}

export function decodeSaslName(text: string): string | null {
  if (!/^(?:[^=,]|=2C|=3D)+$/.test(text)) return null;
  const name = text.replace(/=2C|=3D/g, (code) => (code === "=2C" ? "," : "="));
  return hasControlChars(name) ? null : name;
}

/** The gs2 channel-binding flag: "n" cannot bind, "y" could but thinks the server cannot, "p" binds with `type`. */
export type Gs2ChannelBinding = { flag: "n" | "y" } | { flag: "p"; type: string };

export interface ClientFirstMessage {
  gs2Header: string;
  cbind: Gs2ChannelBinding;
  authzid: string;
  username: string;
  clientNonce: string;
  bare: string;
}

/** Structural parse of the client-first message; a string is the (fixed-text) reason it is wrong. */
export function parseClientFirst(text: string): ClientFirstMessage | string {
  let cbind: Gs2ChannelBinding;
  let flagEnd: number; // the comma after the flag
  if (text.startsWith("p=")) {
    flagEnd = text.indexOf(",");
    const type = text.slice(2, flagEnd < 0 ? undefined : flagEnd);
    if (flagEnd < 0 || !CB_NAME.test(type)) return "bad channel-binding name";
    cbind = { flag: "p", type };
  } else if (text.startsWith("n,") || text.startsWith("y,")) {
    flagEnd = 1;
    cbind = { flag: text[0] as "n" | "y" };
  } else return "bad gs2 channel-binding flag";
  const headerEnd = text.indexOf(",", flagEnd + 1);
  if (headerEnd < 0) return "gs2 header not terminated";
  const authzPart = text.slice(flagEnd + 1, headerEnd);
  let authzid = "";
  if (authzPart !== "") {
    const decoded = authzPart.startsWith("a=") ? decodeSaslName(authzPart.slice(2)) : null;
    if (decoded === null) return "bad authzid";
    authzid = decoded;
  }
  const gs2Header = text.slice(0, headerEnd + 1);
  const bare = text.slice(headerEnd + 1);
  const attrs = bare.split(",");
  if (attrs[0]?.startsWith("m=")) return "mandatory extension not supported"; // RFC 5802 §5.1 "m"
  if (attrs.length < 2 || !attrs[0]!.startsWith("n=") || !attrs[1]!.startsWith("r=")) return "expected n= and r=";
  if (!attrs.slice(2).every((attr) => EXTENSION.test(attr))) return "bad extension";
  const username = decodeSaslName(attrs[0]!.slice(2));
  if (username === null) return "bad user name";
  const clientNonce = attrs[1]!.slice(2);
  if (!PRINTABLE_NONCE.test(clientNonce)) return "bad client nonce";
  return { gs2Header, cbind, authzid, username, clientNonce, bare };
}

export interface ClientFinalMessage {
  channelBinding: Buffer;
  nonce: string;
  proof: Buffer;
  withoutProof: string;
}

export function parseClientFinal(text: string): ClientFinalMessage | string {
  const attrs = text.split(",");
  if (attrs.length < 3 || !attrs[0]!.startsWith("c=") || !attrs[1]!.startsWith("r=")) return "expected c=, r= and p=";
  const last = attrs[attrs.length - 1]!;
  if (!last.startsWith("p=")) return "proof must come last";
  if (!attrs.slice(2, -1).every((attr) => EXTENSION.test(attr) && !attr.startsWith("p="))) return "bad extension";
  const channelBinding = decodeBase64Strict(attrs[0]!.slice(2));
  const proof = decodeBase64Strict(last.slice(2));
  if (channelBinding === null) return "bad channel-binding base64";
  if (proof === null || proof.length !== 32) return "bad proof";
  return { channelBinding, nonce: attrs[1]!.slice(2), proof, withoutProof: text.slice(0, text.length - last.length - 1) };
}

/**
 * Salt and iteration count for a login the store does not know: the salt an HMAC of the login as
 * the store folds it (`alice@x` and ` ALICE@X` share one, as a real user's do), the count and
 * salt length those of the store's real users (docs/SECURITY.md 11.4).
 */
export function fakeScramParameters(key: Buffer, verifier: CredentialVerifier, login: string): { salt: Buffer; iterations: number } {
  const shape = verifier.scramShape?.(login) ?? { iterations: SCRAM_DEFAULT_ITERATIONS, saltBytes: SCRAM_SALT_BYTES };
  return { salt: fakeSalt(key, verifier.loginKey?.(login) ?? login, shape.saltBytes), iterations: shape.iterations };
}

/** HMAC-SHA-256(key, login), stretched with a counter when more than 32 bytes are wanted. */
export function fakeSalt(key: Buffer, login: string, bytes: number): Buffer {
  const blocks: Buffer[] = [];
  for (let i = 0; blocks.length * 32 < bytes; i++) blocks.push(hmacSha256(key, i === 0 ? login : `${i}\0${login}`));
  return Buffer.concat(blocks).subarray(0, bytes);
}

/** Dummy keys for unknown users: the proof check runs and fails exactly like a wrong password. */
const DUMMY_KEYS = { storedKey: randomBytes(32), serverKey: randomBytes(32) };

export interface ScramServerTestHooks {
  /** Fixed server nonce part, for RFC test vectors only. */
  serverNonce?: string;
}

export class ScramSha256Server implements SaslServerMechanism {
  readonly name: string = NAME;
  /** -PLUS: the client must bind to this connection with tls-exporter. */
  protected readonly binds: boolean = false;
  /** The connection's tls-exporter data, read at client-first (-PLUS only). */
  private bindingData: Buffer | null = null;
  private state: "new" | "awaiting-client-first" | "awaiting-store" | "awaiting-client-final" | "awaiting-ack" | "done" = "new";
  private first: ClientFirstMessage | null = null;
  private credentials: ScramCredentials | null = null;
  /** Why the store had no secret (the exchange is faked to its end, then fails with this). */
  private missingReason: "no-usable-secret" | "unknown-user" | undefined;
  private serverFirst = "";
  private nonce = "";
  private success: SaslServerStep | null = null;

  constructor(
    private readonly opts: SaslServerOptions,
    private readonly hooks: ScramServerTestHooks = {},
  ) {}

  async start(initial: Buffer | null): Promise<SaslServerStep> {
    if (this.state !== "new") return this.end(ALREADY_FINISHED);
    if (initial === null) {
      this.state = "awaiting-client-first"; // client-first mechanism: ask with an empty challenge
      return challenge(Buffer.alloc(0));
    }
    return this.onClientFirst(initial);
  }

  async step(response: Buffer): Promise<SaslServerStep> {
    switch (this.state) {
      case "awaiting-client-first":
        return this.onClientFirst(response);
      case "awaiting-client-final":
        return this.onClientFinal(response);
      case "awaiting-ack":
        // RFC 4954 §4: the server-final went out as a challenge; the client answers with nothing.
        return this.end(response.length === 0 && this.success ? this.success : failure("malformed", "expected empty response after server-final"));
      default:
        return this.end(ALREADY_FINISHED);
    }
  }

  private async onClientFirst(message: Buffer): Promise<SaslServerStep> {
    this.state = "done"; // until proven otherwise
    const text = decodeUtf8(message);
    const first = text === null ? "not UTF-8" : parseClientFirst(text);
    if (typeof first === "string") return failure("malformed", `SCRAM client-first: ${first}`);
    const unbound = this.checkBindingFlag(first.cbind);
    if (unbound) return unbound;

    this.state = "awaiting-store";
    const stored = await askStore(() => this.opts.verifier.scramSha256(first.username));
    if (this.state !== "awaiting-store") return ALREADY_FINISHED; // a step() arrived meanwhile and ended us
    this.state = "done";
    if (!stored.ok) return stored.step;
    const missing = stored.value === null ? missingSecretReason(this.opts.verifier, "scram-sha-256", first.username) : undefined;
    if (missing === "mechanism-unavailable") return failure(missing);
    // Known to the store but without a SCRAM secret, or unknown: faked alike, failed at the end.
    this.missingReason = missing;
    // RFC 5802 §9 / SECURITY rule 14: an unknown user gets a stable fake salt, not an error, with
    // the store's iteration count and salt length, from the login as the store folds it.
    this.credentials = stored.value ?? { ...fakeScramParameters(this.opts.fakeSaltKey, this.opts.verifier, first.username), ...DUMMY_KEYS };
    this.first = first;
    this.nonce = first.clientNonce + (this.hooks.serverNonce ?? randomNonce());
    this.serverFirst = `r=${this.nonce},s=${this.credentials.salt.toString("base64")},i=${this.credentials.iterations}`;
    this.state = "awaiting-client-final";
    return challenge(this.serverFirst);
  }

  private async onClientFinal(message: Buffer): Promise<SaslServerStep> {
    this.state = "done";
    const first = this.first!,
      credentials = this.credentials!;
    const text = decodeUtf8(message);
    const final = text === null ? "not UTF-8" : parseClientFinal(text);
    if (typeof final === "string") return failure("malformed", `SCRAM client-final: ${final}`);
    // Structure first, crypto after (SECURITY rule 12).
    // c= is the gs2 header, then (-PLUS) the channel binding data.
    const header = Buffer.from(first.gs2Header, "utf8");
    const boundTo = final.channelBinding.subarray(header.length);
    if (!final.channelBinding.subarray(0, header.length).equals(header) || (!this.bindingData && boundTo.length > 0)) {
      return failure("malformed", "SCRAM channel binding does not match gs2 header");
    }
    // -PLUS: the data must be this TLS connection's; another's means a relay between two connections.
    if (this.bindingData && !safeEqual(boundTo, this.bindingData)) return failure("channel-binding", "c= is not this TLS connection's tls-exporter data");
    if (final.nonce !== this.nonce) return failure("malformed", "SCRAM nonce mismatch");

    // RFC 5802 §3: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) must be StoredKey.
    const authMessage = `${first.bare},${this.serverFirst},${final.withoutProof}`;
    // App passwords share the salt and iteration count, so each is one more HMAC against the proof.
    const proofMatches = (keys: ScramKeys) => safeEqual(sha256(xorBuffers(final.proof, hmacSha256(keys.storedKey, authMessage))), keys.storedKey);
    const match = whichCredential(credentials, credentials.appPasswords, proofMatches);
    if (this.missingReason) return failure(this.missingReason);
    if (!match) return failure("bad-password");

    const outcome = identityFor(this.opts, match, credentials.mainRefused, first.username, first.authzid);
    if (outcome.kind !== "success") return outcome; // no server-final unless the exchange succeeds
    this.success = outcome;
    this.state = "awaiting-ack";
    const serverKey = match.kind === "main" ? credentials.serverKey : credentials.appPasswords![match.index]!.secret.serverKey;
    return challenge(`v=${hmacSha256(serverKey, authMessage).toString("base64")}`);
  }

  /** RFC 5802 §6 and RFC 9266: which gs2 flag each mechanism accepts, before any lookup. */
  private checkBindingFlag(cbind: Gs2ChannelBinding): SaslServerStep | null {
    if (!this.binds) {
      if (cbind.flag === "p") return failure("malformed", "SCRAM client-first: channel binding asked of a mechanism without it");
      // "y": the client could bind but thinks we cannot. We offer -PLUS here, so someone removed it.
      if (cbind.flag === "y" && this.opts.channelBinding?.()) return failure("channel-binding", "gs2 flag y while SCRAM-SHA-256-PLUS is offered (downgrade)");
      return null;
    }
    if (cbind.flag !== "p") return failure("malformed", `SCRAM -PLUS client-first: gs2 flag ${cbind.flag}, expected p=`);
    // RFC 5802 §7 "unsupported-channel-binding-type": SMTP has only 535 for it.
    if (cbind.type !== TLS_EXPORTER) return failure("channel-binding", `unsupported channel binding type ${cbind.type.slice(0, 32)}`);
    this.bindingData = this.opts.channelBinding?.() ?? null;
    return this.bindingData ? null : failure("channel-binding", "no tls-exporter data on this connection (TLS 1.3 only)");
  }

  private end(step: SaslServerStep): SaslServerStep {
    this.state = "done";
    return step;
  }
}

/** SCRAM-SHA-256-PLUS: the same exchange, bound to the TLS connection with tls-exporter (RFC 9266). */
export class ScramSha256PlusServer extends ScramSha256Server {
  override readonly name: string = NAME_PLUS;
  protected override readonly binds: boolean = true;
}

export interface ScramClientTestHooks {
  /** Fixed client nonce, for RFC test vectors only. */
  clientNonce?: string;
}

/** How the client binds: -PLUS sends p=tls-exporter; plain SCRAM sends "y" when it could have bound. */
export interface ScramClientBinding {
  plus: boolean;
  /** This connection's tls-exporter data (TLS 1.3); null or absent: none. */
  data?: () => Buffer | null;
}

export class ScramSha256Client implements SaslClientMechanism {
  readonly name: string;
  private state: "new" | "sent-first" | "sent-final" | "done" = "new";
  private readonly clientNonce: string;
  private bare = "";
  private gs2Header = "";
  /** The tls-exporter data c= carries after the gs2 header (-PLUS). */
  private bindingData: Buffer = Buffer.alloc(0);
  private expectedServerSignature: Buffer | null = null;

  constructor(
    private readonly creds: SaslClientCredentials,
    hooks: ScramClientTestHooks = {},
    private readonly binding: ScramClientBinding = { plus: false },
  ) {
    this.name = binding.plus ? NAME_PLUS : NAME;
    this.clientNonce = hooks.clientNonce ?? randomNonce();
    if (!PRINTABLE_NONCE.test(this.clientNonce)) throw new Error("SCRAM client nonce must be printable without commas");
  }

  initial(): Buffer {
    if (this.state !== "new") throw new Error(`${this.name}: client-first already sent`);
    const data = this.binding.data?.() ?? null;
    let flag = "n";
    if (this.binding.plus) {
      if (!data) throw new Error(`${this.name}: no tls-exporter channel binding (needs TLS 1.3)`);
      flag = `p=${TLS_EXPORTER}`;
      this.bindingData = data;
    } else if (data) flag = "y"; // RFC 5802 §6: we could bind, but the server did not offer -PLUS
    this.gs2Header = this.creds.authzid ? `${flag},a=${encodeSaslName(this.creds.authzid)},` : `${flag},,`;
    this.bare = `n=${encodeSaslName(this.creds.username)},r=${this.clientNonce}`;
    this.state = "sent-first";
    return Buffer.from(this.gs2Header + this.bare, "utf8");
  }

  /** Throws when the server misbehaves or cannot prove it knows the password. */
  respond(challengeData: Buffer): Buffer {
    const text = challengeData.toString("utf8");
    if (this.state === "new" && text === "") return this.initial();
    if (this.state === "sent-first") return this.onServerFirst(text);
    if (this.state === "sent-final") return this.onServerFinal(text);
    throw new Error("SCRAM-SHA-256: unexpected server challenge");
  }

  private onServerFirst(serverFirst: string): Buffer {
    this.state = "done";
    const attrs = serverFirst.split(",");
    if (attrs[0]?.startsWith("m=")) throw new Error("SCRAM-SHA-256: server requires an unsupported extension");
    const [r, s, i] = attrs;
    if (!r?.startsWith("r=") || !s?.startsWith("s=") || !i?.startsWith("i=")) throw new Error("SCRAM-SHA-256: malformed server-first");
    const nonce = r.slice(2);
    if (!nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length || !PRINTABLE_NONCE.test(nonce)) {
      throw new Error("SCRAM-SHA-256: server nonce does not extend ours");
    }
    const salt = decodeBase64Strict(s.slice(2));
    const iterations = /^[1-9][0-9]{0,9}$/.test(i.slice(2)) ? Number(i.slice(2)) : NaN;
    if (!salt || salt.length === 0) throw new Error("SCRAM-SHA-256: bad salt");
    if (!(iterations >= CLIENT_MIN_ITERATIONS && iterations <= CLIENT_MAX_ITERATIONS)) throw new Error("SCRAM-SHA-256: iteration count out of range");

    const salted = scramSaltedPassword(this.creds.password, salt, iterations);
    const clientKey = hmacSha256(salted, "Client Key");
    const cbind = Buffer.concat([Buffer.from(this.gs2Header, "utf8"), this.bindingData]);
    const withoutProof = `c=${cbind.toString("base64")},r=${nonce}`;
    const authMessage = `${this.bare},${serverFirst},${withoutProof}`;
    const proof = xorBuffers(clientKey, hmacSha256(sha256(clientKey), authMessage));
    this.expectedServerSignature = hmacSha256(hmacSha256(salted, "Server Key"), authMessage);
    this.state = "sent-final";
    return Buffer.from(`${withoutProof},p=${proof.toString("base64")}`, "utf8");
  }

  private onServerFinal(serverFinal: string): Buffer {
    this.state = "done";
    const first = serverFinal.split(",")[0] ?? "";
    if (first.startsWith("e="))
      throw new Error(
        `SCRAM-SHA-256: server error ${first
          .slice(2)
          .replace(/[^\x21-\x7e]/g, "?")
          .slice(0, 64)}`,
      );
    const signature = first.startsWith("v=") ? decodeBase64Strict(first.slice(2)) : null;
    if (!signature || !safeEqual(signature, this.expectedServerSignature!)) throw new Error("SCRAM-SHA-256: server signature mismatch");
    return Buffer.alloc(0);
  }
}

/** RFC 7677 (RFC 5802): a salted challenge-response; the store keeps StoredKey and ServerKey only. */
export const SCRAM_SHA_256: MechanismDescriptor = {
  name: NAME,
  needs: "scram-sha-256",
  plaintext: false,
  createServer: (opts) => new ScramSha256Server(opts),
  // The caller passes the binding only when the server did not offer -PLUS (then "y").
  createClient: (creds, options) => new ScramSha256Client(creds, {}, { plus: false, ...(options.channelBinding ? { data: options.channelBinding } : {}) }),
  loginInFirstMessage: scramLoginInFirstMessage,
};

/** RFC 5802 -PLUS with RFC 9266 tls-exporter: same secrets, offered only on TLS 1.3 connections. */
export const SCRAM_SHA_256_PLUS: MechanismDescriptor = {
  name: NAME_PLUS,
  needs: "scram-sha-256",
  plaintext: false,
  channelBinding: true,
  createServer: (opts) => new ScramSha256PlusServer(opts),
  createClient: (creds, options) => new ScramSha256Client(creds, {}, { plus: true, ...(options.channelBinding ? { data: options.channelBinding } : {}) }),
  loginInFirstMessage: scramLoginInFirstMessage,
};

/** The user name of a SCRAM client-first message (any SCRAM-SHA-* variant: the syntax is shared). */
export function scramLoginInFirstMessage(message: Buffer): string | undefined {
  const text = decodeUtf8(message);
  const first = text === null ? null : parseClientFirst(text);
  return first !== null && typeof first !== "string" ? first.username : undefined;
}
