/**
 * XOAUTH2 (Google's pre-standard form of OAUTHBEARER): `user=<login>^Aauth=Bearer <token>^A^A`.
 * On failure the server sends a JSON error as a challenge, the client answers with an empty
 * response, and the exchange fails (developers.google.com/gmail/imap/xoauth2-protocol).
 */
import { BearerServer, bearerToken, type BearerDialect, type BearerMessage } from "./oauthbearer.js";
import { decodeUtf8, hasControlChars } from "./text.js";
import type { MechanismDescriptor, SaslClientCredentials, SaslClientMechanism } from "./types.js";

/** Exactly `user=…`, `auth=…`, in that order, each ended by %x01, then a final %x01. Null when malformed. */
export function parseXOAuth2Message(message: Buffer): BearerMessage | null {
  const text = decodeUtf8(message);
  const match = text === null ? null : /^user=([^\x01]+)\x01auth=([^\x01]+)\x01\x01$/.exec(text);
  if (!match || hasControlChars(match[1]!) || hasControlChars(match[2]!)) return null;
  const token = bearerToken(match[2]!);
  return token === null ? null : { user: match[1]!, token };
}

export function encodeXOAuth2Message(user: string, token: string): Buffer {
  return Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`, "utf8");
}

const XOAUTH2_DIALECT: BearerDialect = {
  name: "XOAUTH2",
  parse: parseXOAuth2Message,
  malformedDetail: "XOAUTH2 message is not user=… ^A auth=Bearer … ^A^A",
  errorChallenge: (scope) => JSON.stringify({ status: "401", schemes: "bearer", ...(scope ? { scope } : {}) }),
  // The client answers the error with an empty response.
  acceptsErrorAnswer: (response) => response.length === 0,
};

export class XOAuth2Client implements SaslClientMechanism {
  readonly name = "XOAUTH2";
  private sent = false;

  constructor(private readonly creds: SaslClientCredentials) {}

  initial(): Buffer {
    this.sent = true;
    return encodeXOAuth2Message(this.creds.username, this.creds.password);
  }

  respond(challengeData: Buffer): Buffer {
    if (!this.sent && challengeData.length === 0) return this.initial();
    return Buffer.alloc(0);
  }
}

export const XOAUTH2: MechanismDescriptor = {
  name: "XOAUTH2",
  needs: "bearer-token",
  plaintext: true,
  createServer: (opts) => new BearerServer(XOAUTH2_DIALECT, opts),
  createClient: (creds) => new XOAuth2Client(creds),
  loginInFirstMessage: (message) => parseXOAuth2Message(message)?.user,
};
