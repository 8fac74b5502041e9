/** Test doubles for the SASL tests: the in-memory verifier and an SMTP-like exchange driver. */
import type { CredentialVerifier, SaslClientMechanism, SaslServerMechanism, SaslServerOptions, SaslServerStep } from "../../src/sasl/types.js";

export const HOSTNAME = "mail.example.org";

/** The in-memory store is shared with the session harness (test/helpers/memory-verifier.ts). */
export { MemoryVerifier } from "../helpers/memory-verifier.js";

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
export async function runExchange(server: SaslServerMechanism, client: SaslClientMechanism, { useInitialResponse = true } = {}): Promise<SaslServerStep> {
  const wire = (data: Buffer) => Buffer.from(data.toString("base64"), "base64");
  const initial = useInitialResponse ? client.initial() : null;
  let step = await server.start(initial === null ? null : wire(initial));
  for (let rounds = 0; step.kind === "challenge" && rounds < 10; rounds++) {
    step = await server.step(wire(client.respond(wire(step.data))));
  }
  return step;
}

export const bytes = (text: string): Buffer => Buffer.from(text, "utf8");
