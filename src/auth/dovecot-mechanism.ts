/**
 * A SASL mechanism passed through to Dovecot: whatever Dovecot offers (SCRAM-SHA-256, PLAIN,
 * LOGIN, …) is relayed step by step, as Postfix does with smtpd_sasl_type=dovecot. One object per
 * AUTH attempt (SECURITY.md rule 12).
 *
 * Two things Dovecot alone would get wrong for us (docs/SECURITY.md 11.4, 11.8):
 * - the login is learned from the client's first message (PLAIN, LOGIN, SCRAM, CRAM-MD5,
 *   DIGEST-MD5) and from Dovecot's `user=`, so the per-account lockout counts it and refuses a
 *   locked-out account before Dovecot is even asked;
 * - Dovecot fails a SCRAM client-first for a login it does not know (late, after its failure
 *   delay) where a known login gets its salt at once: that tells which logins exist. Here every
 *   client-first gets a server-first — Dovecot's, or a fake one with a salt derived from the login
 *   as Dovecot reported it — and both go out at one hold time after the client-first.
 */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { DovecotAuthClient, DovecotReply } from "./dovecot-client.js";
import { findMechanism } from "../sasl/registry.js";
import { fakeSalt, parseClientFirst, scramLoginInFirstMessage } from "../sasl/scram-sha-256.js";
import { challenge, decodeUtf8, failure } from "../sasl/text.js";
import type { SaslServerMechanism, SaslServerStep } from "../sasl/types.js";

export interface DovecotMechanismOptions {
  remoteIp?: string;
  /** Told each login the exchange names; throws (or rejects) to refuse it (an account locked out: 454). */
  login?(user: string): void | Promise<void>;
  /** SCRAM: key for the fake salts of logins Dovecot refuses at the client-first. */
  fakeSaltKey?: Buffer;
  /**
   * SCRAM: no server-first (real or fake) leaves sooner than this after the client-first, and a
   * faked exchange fails no sooner than this after the client-final. Must exceed the time Dovecot
   * takes to answer a failure (its auth_failure_delay, plus up to 0.5 s for its failure timer).
   */
  scramHoldMs?: number;
}

/** Dovecot 2.3's SCRAM defaults (mech-scram.c, password-scheme-scram.c): what a fake must look like. */
const DOVECOT_SCRAM_ITERATIONS = 4096;
const DOVECOT_SCRAM_SALT_BYTES = 16;
const DOVECOT_SCRAM_NONCE_CHARS = 64;

/** Dovecot's server nonce: 64 characters from "!" to "~" without ",". */
function dovecotLikeNonce(): string {
  const alphabet = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).filter((c) => c !== ",");
  let out = "";
  while (out.length < DOVECOT_SCRAM_NONCE_CHARS) {
    for (const byte of randomBytes(DOVECOT_SCRAM_NONCE_CHARS)) {
      if (byte < 256 - (256 % alphabet.length) && out.length < DOVECOT_SCRAM_NONCE_CHARS) out += alphabet[byte % alphabet.length];
    }
  }
  return out;
}

/** When no key is given: still secret, per process (a known key would let anyone tell fakes apart). */
const FALLBACK_FAKE_SALT_KEY = randomBytes(32);

const isScram = (name: string) => /^SCRAM-SHA-[0-9]+$/.test(name);

/**
 * The login a mechanism's first client message names, when we can read it; undefined otherwise.
 * Each of our mechanisms reads its own (registry.ts); Dovecot's other SCRAM variants share SCRAM's syntax.
 */
export function loginInFirstMessage(mechanism: string, message: Buffer): string | undefined {
  const known = findMechanism(mechanism);
  if (known) return known.loginInFirstMessage?.(message);
  return isScram(mechanism) ? scramLoginInFirstMessage(message) : undefined;
}

export class DovecotMechanism implements SaslServerMechanism {
  private id = 0;
  private state: "new" | "exchanging" | "final-ack" | "faked" | "done" = "new";
  private user = "";
  private clientMessages = 0;

  constructor(
    readonly name: string,
    private readonly client: DovecotAuthClient,
    private readonly options: DovecotMechanismOptions,
  ) {}

  async start(initial: Buffer | null): Promise<SaslServerStep> {
    if (this.state !== "new") return this.finish(failure("malformed", "exchange already finished"));
    this.state = "exchanging";
    const started = performance.now();
    const first = initial === null ? null : await this.firstMessage(initial);
    if (first?.refused) return this.finish(first.refused);
    try {
      const request = this.client.begin(this.name, initial, this.options);
      this.id = request.id;
      return await this.answer(await request.reply, started, first?.scram);
    } catch (err) {
      return this.finish(failure("backend-error", (err as Error).message));
    }
  }

  async step(response: Buffer): Promise<SaslServerStep> {
    const started = performance.now();
    if (this.state === "final-ack") {
      // RFC 4954 §4: after additional data in a 334, the client answers with an empty line.
      if (response.length !== 0) return this.finish(failure("malformed", "expected an empty response after the server's final data"));
      return this.finish({ kind: "success", identity: { authcid: this.user, authzid: this.user } });
    }
    if (this.state === "faked") {
      // Whatever the client-final says, it fails, as Dovecot's answer to a real one would, and no
      // sooner than Dovecot would answer a failure.
      this.state = "done";
      await this.hold(started);
      return failure("bad-password", "Dovecot: FAIL (at the SCRAM client-first)");
    }
    if (this.state !== "exchanging") return this.finish(failure("malformed", "exchange already finished"));
    const first = await this.firstMessage(response);
    if (first?.refused) return this.finish(first.refused);
    try {
      return await this.answer(await this.client.continue(this.id, response), started, first?.scram);
    } catch (err) {
      return this.finish(failure("backend-error", (err as Error).message));
    }
  }

  /**
   * The client's first message names the login: count it, refuse it when locked out. A SCRAM
   * client-first is checked here as our own SCRAM would (a fake needs its nonce).
   */
  private async firstMessage(message: Buffer): Promise<{ refused?: SaslServerStep; scram?: { nonce: string; login: string } } | null> {
    if (this.clientMessages++ > 0) return null;
    let scram: { nonce: string; login: string } | undefined;
    if (isScram(this.name)) {
      const text = decodeUtf8(message);
      const parsed = text === null ? "not UTF-8" : parseClientFirst(text);
      if (typeof parsed === "string") return { refused: failure("malformed", `SCRAM client-first: ${parsed}`) };
      scram = { nonce: parsed.clientNonce, login: parsed.username };
    }
    const login = loginInFirstMessage(this.name, message);
    if (login !== undefined) {
      try {
        await this.options.login?.(login);
      } catch (err) {
        return { refused: failure("backend-error", (err as Error).message) };
      }
    }
    return scram === undefined ? {} : { scram };
  }

  private async answer(reply: DovecotReply, started: number, scram: { nonce: string; login: string } | undefined): Promise<SaslServerStep> {
    if (reply.kind === "FAIL") this.noteLogin(reply.params.get("user"));
    if (scram === undefined || reply.kind === "OK" || reply.params.has("temp")) return this.map(reply);
    let step: SaslServerStep;
    if (reply.kind === "CONT") step = this.map(reply);
    else {
      // A fake server-first, as Dovecot writes one, salted from the login as Dovecot reported it
      // (its auth_username_format folds case: ALICE and alice are one user), else as Dovecot's
      // default %Lu would fold it.
      const login = reply.params.get("user") ?? scram.login.replace(/[A-Z]/g, (c) => c.toLowerCase());
      const salt = fakeSalt(this.options.fakeSaltKey ?? FALLBACK_FAKE_SALT_KEY, `dovecot\0${login}`, DOVECOT_SCRAM_SALT_BYTES);
      this.state = "faked";
      step = challenge(`r=${scram.nonce}${dovecotLikeNonce()},s=${salt.toString("base64")},i=${DOVECOT_SCRAM_ITERATIONS}`);
    }
    await this.hold(started);
    return step;
  }

  private noteLogin(user: string | undefined): void {
    if (!user) return;
    try {
      // Only counted here: the exchange is over either way.
      Promise.resolve(this.options.login?.(user)).catch(() => undefined);
    } catch {
      // (a throttle that answers at once throws at once)
    }
  }

  private async hold(started: number): Promise<void> {
    const wait = started + (this.options.scramHoldMs ?? 0) - performance.now();
    if (wait > 0) await sleep(wait);
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
