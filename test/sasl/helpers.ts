/** Test doubles for the SASL tests: an in-memory verifier and an SMTP-like exchange driver. */
import { deriveCramMd5Secret, deriveDigestMd5Ha1, deriveScramSha256 } from "../../src/sasl/secrets.js";
import type {
  CredentialVerifier, CramMd5Secret, SaslClientMechanism, SaslServerMechanism, SaslServerOptions, SaslServerStep, ScramCredentials, VerifyResult,
} from "../../src/sasl/types.js";

export const HOSTNAME = "mail.example.org";

/** Users and passwords in memory; records every call so tests can see what was asked. */
export class MemoryVerifier implements CredentialVerifier {
  readonly calls: string[] = [];
  mechanisms = ["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN", "DIGEST-MD5"];
  throwOnLookup = false;
  private readonly scram = new Map<string, ScramCredentials>();

  constructor(private readonly passwords: Record<string, string>) {
    for (const [user, password] of Object.entries(passwords)) this.scram.set(user, deriveScramSha256(password));
  }

  setScram(user: string, credentials: ScramCredentials): void {
    this.scram.set(user, credentials);
  }

  async verifyPassword(user: string, password: string): Promise<VerifyResult> {
    this.calls.push(`verifyPassword:${user}`);
    const expected = this.passwords[user];
    if (expected === undefined) return { ok: false, reason: "unknown-user" };
    return expected === password ? { ok: true, user } : { ok: false, reason: "bad-password" };
  }

  async scramSha256(user: string): Promise<ScramCredentials | null> {
    this.lookup(`scramSha256:${user}`);
    return this.scram.get(user) ?? null;
  }

  async cramMd5(user: string): Promise<CramMd5Secret | null> {
    this.lookup(`cramMd5:${user}`);
    const password = this.passwords[user];
    return password === undefined ? null : deriveCramMd5Secret(password);
  }

  async digestMd5(user: string, realm: string): Promise<Buffer | null> {
    this.lookup(`digestMd5:${user}:${realm}`);
    const password = this.passwords[user];
    return password === undefined ? null : deriveDigestMd5Ha1(user, realm, password);
  }

  supportedMechanisms(): string[] {
    return this.mechanisms;
  }

  private lookup(call: string): void {
    this.calls.push(call);
    if (this.throwOnLookup) throw new Error("database is locked");
  }
}

export function serverOptions(verifier: CredentialVerifier, overrides: Partial<SaslServerOptions> = {}): SaslServerOptions {
  return {
    verifier,
    hostname: HOSTNAME,
    authzidAllowed: () => false,
    fakeSaltKey: Buffer.from("fake-salt-key-for-tests-only-32b"),
    ...overrides,
  };
}

/**
 * Drive a server and a client the way the SMTP layer does: optional initial response, then
 * challenge → response until the server finishes. Base64 round trips mimic the wire.
 */
export async function runExchange(
  server: SaslServerMechanism,
  client: SaslClientMechanism,
  { useInitialResponse = true } = {},
): Promise<SaslServerStep> {
  const wire = (data: Buffer) => Buffer.from(data.toString("base64"), "base64");
  const initial = useInitialResponse ? client.initial() : null;
  let step = await server.start(initial === null ? null : wire(initial));
  for (let rounds = 0; step.kind === "challenge" && rounds < 10; rounds++) {
    step = await server.step(wire(client.respond(wire(step.data))));
  }
  return step;
}

export const bytes = (text: string): Buffer => Buffer.from(text, "utf8");
