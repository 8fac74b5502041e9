/**
 * CRAM-MD5 (RFC 2195): the server sends `<random.timestamp@hostname>`, the client answers
 * `user SP hex(HMAC-MD5(password, challenge))`. The server finishes HMAC from the stored
 * Dovecot-style secret (md5-state.ts), so no plaintext password is needed.
 */
import { createHmac, randomBytes } from "node:crypto";
import { hmacMd5FromSecret } from "./md5-state.js";
import { deriveCramMd5Secret, normalizePassword } from "./secrets.js";
import { askStore, identityFor, missingSecretReason, whichCredential } from "./server-support.js";
import { ALREADY_FINISHED, challenge, decodeCredentialText, failure, safeEqual } from "./text.js";
import type {
  CramMd5State,
  MechanismDescriptor,
  SaslClientCredentials,
  SaslClientMechanism,
  SaslServerMechanism,
  SaslServerOptions,
  SaslServerStep,
} from "./types.js";

/** Unknown users are checked against this, so they cost the same work as known ones. */
const DUMMY_SECRET = deriveCramMd5Secret(randomBytes(24).toString("base64"));

/** RFC 2195 §2: a msg-id style string, unique per exchange. */
export function makeCramMd5Challenge(hostname: string, now = Date.now()): string {
  return `<${randomBytes(8).readBigUInt64BE()}.${now}@${hostname}>`;
}

export interface CramMd5ServerTestHooks {
  /** Fixed challenge, for RFC test vectors only. */
  challenge?: string;
}

export class CramMd5Server implements SaslServerMechanism {
  readonly name = "CRAM-MD5";
  private state: "new" | "awaiting-response" | "done" = "new";
  private readonly challengeText: string;

  constructor(
    private readonly opts: SaslServerOptions,
    hooks: CramMd5ServerTestHooks = {},
  ) {
    this.challengeText = hooks.challenge ?? makeCramMd5Challenge(opts.hostname);
  }

  async start(initial: Buffer | null): Promise<SaslServerStep> {
    if (this.state !== "new") return this.end(ALREADY_FINISHED);
    // The server speaks first, so an initial response is a protocol error (RFC 4954 §4 → 501).
    if (initial !== null) return this.end(failure("malformed", "CRAM-MD5 takes no initial response"));
    this.state = "awaiting-response";
    return challenge(this.challengeText);
  }

  async step(response: Buffer): Promise<SaslServerStep> {
    if (this.state !== "awaiting-response") return this.end(ALREADY_FINISHED);
    this.state = "done";
    const text = decodeCredentialText(response);
    const space = text === null ? -1 : text.lastIndexOf(" ");
    // The user name may itself contain spaces; the digest is the last word (RFC 2195 §2).
    const user = text?.slice(0, space) ?? "";
    const digestHex = text?.slice(space + 1).toLowerCase() ?? "";
    if (space <= 0 || !/^[0-9a-f]{32}$/.test(digestHex)) return failure("malformed", "CRAM-MD5 response is not 'user digest'");

    const stored = await askStore(() => this.opts.verifier.cramMd5(user));
    if (!stored.ok) return stored.step;
    const secret = stored.value ?? DUMMY_SECRET;
    const sent = Buffer.from(digestHex, "hex");
    const challengeBytes = Buffer.from(this.challengeText, "utf8");
    const match = whichCredential<CramMd5State>(secret, secret.appPasswords, (s) => safeEqual(hmacMd5FromSecret(s, challengeBytes), sent));
    if (stored.value === null) return failure(missingSecretReason(this.opts.verifier, "cram-md5", user));
    if (!match) return failure("bad-password");
    return identityFor(this.opts, match, secret.mainRefused, user, "");
  }

  private end(step: SaslServerStep): SaslServerStep {
    this.state = "done";
    return step;
  }
}

export function cramMd5Digest(password: string, challengeData: Buffer): string {
  return createHmac("md5", Buffer.from(normalizePassword(password), "utf8"))
    .update(challengeData)
    .digest("hex");
}

export class CramMd5Client implements SaslClientMechanism {
  readonly name = "CRAM-MD5";
  private answered = false;

  constructor(private readonly creds: SaslClientCredentials) {}

  initial(): null {
    return null;
  }

  respond(challengeData: Buffer): Buffer {
    if (this.answered || challengeData.length === 0) throw new Error("CRAM-MD5: unexpected server challenge");
    this.answered = true;
    return Buffer.from(`${this.creds.username} ${cramMd5Digest(this.creds.password, challengeData)}`, "utf8");
  }
}

/** RFC 2195: an HMAC-MD5 of the challenge, checked against the stored MD5 state. */
export const CRAM_MD5: MechanismDescriptor = {
  name: "CRAM-MD5",
  needs: "cram-md5",
  plaintext: false,
  createServer: (opts) => new CramMd5Server(opts),
  createClient: (creds) => new CramMd5Client(creds),
  // "user digest": the user name is everything before the last space.
  loginInFirstMessage: (message) => {
    const text = decodeCredentialText(message);
    const space = text?.lastIndexOf(" ") ?? -1;
    return text && space > 0 ? text.slice(0, space) : undefined;
  },
};
