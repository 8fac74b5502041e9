/**
 * App passwords: per-device credentials the server generates, shown once, stored only as a scrypt
 * hash. Written as five groups of four lower-case letters and digits, "abcd-efgh-ijkl-mnop-qrst":
 * the first group is the credential's lookup id (not secret, unique per user), the other sixteen
 * characters are the secret (36^16 ≈ 2^82.7).
 *
 * Why a lookup id: a login with a user's n app passwords must cost one scrypt, as a login without
 * any does; trying each hash in turn would make failures n times slower and tell a guesser how many
 * devices an account has (docs/SECURITY.md rule 14). The id picks the one hash to check.
 */
import { randomInt } from "node:crypto";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";
export const APP_PASSWORD_ID_LENGTH = 4;
const SECRET_LENGTH = 16;
const GROUP = 4;
const SHAPE = new RegExp(`^[a-z0-9]{${APP_PASSWORD_ID_LENGTH + SECRET_LENGTH}}$`);

/** A fresh app password, grouped for reading it off one screen and typing it into another. */
export function generateAppPassword(): string {
  let text = "";
  for (let i = 0; i < APP_PASSWORD_ID_LENGTH + SECRET_LENGTH; i++) text += ALPHABET[randomInt(ALPHABET.length)];
  return text.match(new RegExp(`.{${GROUP}}`, "g"))!.join("-");
}

/**
 * The canonical form of what a client sent, if it has an app password's shape: separators
 * (dashes, spaces) dropped and letters lower-cased, as phones auto-capitalise. Null otherwise.
 */
export function canonicalAppPassword(sent: string): string | null {
  if (sent.length > 40) return null;
  const compact = sent.replace(/[-\s]/g, "").toLowerCase();
  return SHAPE.test(compact) ? compact : null;
}

/**
 * The texts a client may key SCRAM or CRAM-MD5 with (they see the password, not our folding):
 * the grouped form as shown, and the same without separators.
 */
export function appPasswordForms(shown: string): string[] {
  const grouped = shown.toLowerCase();
  const compact = grouped.replace(/[-\s]/g, "");
  return grouped === compact ? [grouped] : [grouped, compact];
}

/** The lookup id of a canonical app password. */
export function appPasswordId(canonical: string): string {
  return canonical.slice(0, APP_PASSWORD_ID_LENGTH);
}

/** Names are for people (`iphone`, `laptop 2`): printable, one line, short. */
export function checkAppPasswordName(name: string): string {
  const trimmed = name.trim();
  if (trimmed === "" || trimmed.length > 64 || /[\u0000-\u001f\u007f]/.test(trimmed)) {
    throw new Error(`invalid app password name ${JSON.stringify(name)}: 1 to 64 printable characters`);
  }
  return trimmed;
}
