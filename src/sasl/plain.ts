/**
 * PLAIN (RFC 4616): one client message `[authzid] NUL authcid NUL passwd`.
 * The password is checked for the authcid; the authzid is only an identity to act as.
 */
import { resolveIdentity } from "./server-support.js";
import { ALREADY_FINISHED, challenge, decodeUtf8, failure, hasControlChars } from "./text.js";
import type { MechanismDescriptor, SaslClientCredentials, SaslClientMechanism, SaslServerMechanism, SaslServerOptions, SaslServerStep } from "./types.js";

export interface PlainMessage {
  authzid: string;
  authcid: string;
  password: string;
}

/**
 * Parse strictly (RFC 4616 §2 grammar, SECURITY rule 11): exactly two NULs, valid UTF-8,
 * non-empty authcid and password, no control characters anywhere. Null when malformed.
 */
export function parsePlainMessage(message: Buffer): PlainMessage | null {
  const first = message.indexOf(0);
  const second = first < 0 ? -1 : message.indexOf(0, first + 1);
  if (second < 0 || message.indexOf(0, second + 1) >= 0) return null;
  const parts = [message.subarray(0, first), message.subarray(first + 1, second), message.subarray(second + 1)].map(decodeUtf8);
  const [authzid, authcid, password] = parts;
  if (authzid == null || authcid == null || password == null) return null;
  if (authcid === "" || password === "") return null;
  if (parts.some((part) => hasControlChars(part!))) return null;
  return { authzid, authcid, password };
}

export function encodePlainMessage(message: PlainMessage): Buffer {
  return Buffer.from(`${message.authzid}\0${message.authcid}\0${message.password}`, "utf8");
}

export class PlainServer implements SaslServerMechanism {
  readonly name = "PLAIN";
  private state: "new" | "awaiting-message" | "done" = "new";

  constructor(private readonly opts: SaslServerOptions) {}

  async start(initial: Buffer | null): Promise<SaslServerStep> {
    if (this.state !== "new") return this.end(ALREADY_FINISHED);
    if (initial === null) {
      // No initial response: ask for it with an empty challenge ("334 ", RFC 4954 §4).
      this.state = "awaiting-message";
      return challenge(Buffer.alloc(0));
    }
    return this.verify(initial);
  }

  async step(response: Buffer): Promise<SaslServerStep> {
    if (this.state !== "awaiting-message") return this.end(ALREADY_FINISHED);
    return this.verify(response);
  }

  private async verify(message: Buffer): Promise<SaslServerStep> {
    this.state = "done";
    const parsed = parsePlainMessage(message);
    if (!parsed) return failure("malformed", "PLAIN message is not authzid NUL authcid NUL password");
    const result = await this.opts.verifier.verifyPassword(parsed.authcid, parsed.password);
    if (!result.ok) return failure(result.reason, result.detail);
    return resolveIdentity(this.opts, parsed.authcid, result.user, parsed.authzid, result.credential);
  }

  private end(step: SaslServerStep): SaslServerStep {
    this.state = "done";
    return step;
  }
}

export class PlainClient implements SaslClientMechanism {
  readonly name = "PLAIN";
  private sent = false;

  constructor(private readonly creds: SaslClientCredentials) {}

  initial(): Buffer {
    this.sent = true;
    return this.message();
  }

  /** Only an empty challenge (the server asking for the message) is expected. */
  respond(challengeData: Buffer): Buffer {
    if (this.sent || challengeData.length !== 0) throw new Error("PLAIN: unexpected server challenge");
    this.sent = true;
    return this.message();
  }

  private message(): Buffer {
    return encodePlainMessage({ authzid: this.creds.authzid ?? "", authcid: this.creds.username, password: this.creds.password });
  }
}

/** RFC 4616: the password in the clear, checked by the store. */
export const PLAIN: MechanismDescriptor = {
  name: "PLAIN",
  needs: "password",
  plaintext: true,
  createServer: (opts) => new PlainServer(opts),
  createClient: (creds) => new PlainClient(creds),
  loginInFirstMessage: (message) => parsePlainMessage(message)?.authcid,
};
