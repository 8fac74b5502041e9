/**
 * LOGIN (draft-murchison-sasl-login): the server prompts "Username:" then "Password:" (as bytes;
 * the SMTP layer base64s them). An initial response is taken as the user name.
 */
import { resolveIdentity } from "./server-support.js";
import { ALREADY_FINISHED, challenge, decodeCredentialText, failure } from "./text.js";
import type { MechanismDescriptor, SaslClientCredentials, SaslClientMechanism, SaslServerMechanism, SaslServerOptions, SaslServerStep } from "./types.js";

export const LOGIN_USERNAME_PROMPT = "Username:";
export const LOGIN_PASSWORD_PROMPT = "Password:";

export class LoginServer implements SaslServerMechanism {
  readonly name = "LOGIN";
  private state: "new" | "awaiting-username" | "awaiting-password" | "done" = "new";
  private username = "";

  constructor(private readonly opts: SaslServerOptions) {}

  async start(initial: Buffer | null): Promise<SaslServerStep> {
    if (this.state !== "new") return this.end(ALREADY_FINISHED);
    if (initial === null) {
      this.state = "awaiting-username";
      return challenge(LOGIN_USERNAME_PROMPT);
    }
    return this.takeUsername(initial);
  }

  async step(response: Buffer): Promise<SaslServerStep> {
    switch (this.state) {
      case "awaiting-username":
        return this.takeUsername(response);
      case "awaiting-password":
        return this.takePassword(response);
      default:
        return this.end(ALREADY_FINISHED);
    }
  }

  private takeUsername(data: Buffer): SaslServerStep {
    const username = decodeCredentialText(data);
    if (username === null) return this.end(failure("malformed", "LOGIN user name empty or not text"));
    this.username = username;
    this.state = "awaiting-password";
    return challenge(LOGIN_PASSWORD_PROMPT);
  }

  private async takePassword(data: Buffer): Promise<SaslServerStep> {
    this.state = "done";
    const password = decodeCredentialText(data);
    if (password === null) return failure("malformed", "LOGIN password empty or not text");
    const result = await this.opts.verifier.verifyPassword(this.username, password);
    if (!result.ok) return failure(result.reason, result.detail);
    return resolveIdentity(this.opts, this.username, result.user, "", result.credential);
  }

  private end(step: SaslServerStep): SaslServerStep {
    this.state = "done";
    return step;
  }
}

/** Answers the first prompt with the user name and the second with the password, whatever their text. */
export class LoginClient implements SaslClientMechanism {
  readonly name = "LOGIN";
  private prompts = 0;

  constructor(private readonly creds: SaslClientCredentials) {}

  initial(): null {
    return null;
  }

  respond(_challenge: Buffer): Buffer {
    this.prompts++;
    if (this.prompts === 1) return Buffer.from(this.creds.username, "utf8");
    if (this.prompts === 2) return Buffer.from(this.creds.password, "utf8");
    throw new Error("LOGIN: unexpected third server challenge");
  }
}

/** The draft LOGIN mechanism (draft-murchison-sasl-login): user name, then password, in the clear. */
export const LOGIN: MechanismDescriptor = {
  name: "LOGIN",
  needs: "password",
  plaintext: true,
  createServer: (opts) => new LoginServer(opts),
  createClient: (creds) => new LoginClient(creds),
  loginInFirstMessage: (message) => decodeCredentialText(message) ?? undefined,
};
