/**
 * A SASL mechanism passed through to Dovecot: whatever Dovecot offers (SCRAM-SHA-256, PLAIN,
 * LOGIN, …) is relayed step by step, as Postfix does with smtpd_sasl_type=dovecot. One object per
 * AUTH attempt (SECURITY.md rule 12).
 */
import type { DovecotAuthClient, DovecotReply } from "./dovecot-client.js";
import { challenge, failure } from "../sasl/text.js";
import type { SaslServerMechanism, SaslServerStep } from "../sasl/types.js";

export class DovecotMechanism implements SaslServerMechanism {
  private id = 0;
  private state: "new" | "exchanging" | "final-ack" | "done" = "new";
  private user = "";

  constructor(
    readonly name: string,
    private readonly client: DovecotAuthClient,
    private readonly context: { remoteIp?: string },
  ) {}

  async start(initial: Buffer | null): Promise<SaslServerStep> {
    if (this.state !== "new") return this.finish(failure("malformed", "exchange already finished"));
    this.state = "exchanging";
    try {
      const request = this.client.begin(this.name, initial, this.context);
      this.id = request.id;
      return this.map(await request.reply);
    } catch (err) {
      return this.finish(failure("backend-error", (err as Error).message));
    }
  }

  async step(response: Buffer): Promise<SaslServerStep> {
    if (this.state === "final-ack") {
      // RFC 4954 §4: after additional data in a 334, the client answers with an empty line.
      if (response.length !== 0) return this.finish(failure("malformed", "expected an empty response after the server's final data"));
      return this.finish({ kind: "success", identity: { authcid: this.user, authzid: this.user } });
    }
    if (this.state !== "exchanging") return this.finish(failure("malformed", "exchange already finished"));
    try {
      return this.map(await this.client.continue(this.id, response));
    } catch (err) {
      return this.finish(failure("backend-error", (err as Error).message));
    }
  }

  private map(reply: DovecotReply): SaslServerStep {
    if (reply.kind === "CONT") return challenge(Buffer.from(reply.data ?? "", "base64"));
    if (reply.kind === "OK") {
      this.user = reply.params.get("user") ?? "";
      if (this.user === "") return this.finish(failure("backend-error", "Dovecot OK without user="));
      const final = reply.params.get("resp");
      if (final !== undefined && final !== "") {
        this.state = "final-ack"; // SCRAM's server-final message
        return challenge(Buffer.from(final, "base64"));
      }
      return this.finish({ kind: "success", identity: { authcid: this.user, authzid: this.user } });
    }
    const reason = reply.params.get("reason");
    if (reply.params.has("temp")) return this.finish(failure("backend-error", `Dovecot: temporary failure${reason ? `: ${reason}` : ""}`));
    // Dovecot does not tell an unknown user from a wrong password (nor should it).
    return this.finish(failure("bad-password", reason ? `Dovecot: ${reason}` : "Dovecot: FAIL"));
  }

  private finish(step: SaslServerStep): SaslServerStep {
    this.state = "done";
    return step;
  }
}
