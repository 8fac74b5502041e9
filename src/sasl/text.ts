/**
 * Byte/text helpers shared by the mechanisms. Mechanisms receive decoded bytes; these turn them
 * into text strictly (invalid UTF-8 or control characters are a malformed message, SECURITY rule 11).
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { SaslFailureReason, SaslServerStep } from "./types.js";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Decode UTF-8, or null when the bytes are not valid UTF-8. */
export function decodeUtf8(bytes: Buffer): string | null {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return null;
  }
}

/** C0 controls (NUL included), DEL and C1 controls. */
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;

export function hasControlChars(text: string): boolean {
  return CONTROL_CHARS.test(text);
}

/** Valid UTF-8, non-empty, no control characters: what a user name or password must be. */
export function decodeCredentialText(bytes: Buffer): string | null {
  const text = decodeUtf8(bytes);
  if (text === null || text.length === 0 || hasControlChars(text)) return null;
  return text;
}

const BASE64_SHAPE = /^[A-Za-z0-9+/]*={0,2}$/;

/** Strict base64 (Node's decoder ignores garbage): canonical alphabet, length a multiple of 4. */
export function decodeBase64Strict(text: string): Buffer | null {
  if (text.length % 4 !== 0 || !BASE64_SHAPE.test(text)) return null;
  const bytes = Buffer.from(text, "base64");
  // Re-encoding rejects non-zero padding bits, so every value has exactly one spelling.
  return bytes.toString("base64") === text ? bytes : null;
}

/** Constant-time comparison that tolerates different lengths (length itself is not secret here). */
export function safeEqual(a: Buffer, b: Buffer): boolean {
  if (a.length !== b.length) {
    timingSafeEqual(a, a); // same work either way
    return false;
  }
  return timingSafeEqual(a, b);
}

/** A nonce of printable ASCII without commas or quotes (base64 alphabet), fit for every mechanism. */
export function randomNonce(bytes = 18): string {
  return randomBytes(bytes).toString("base64");
}

export function xorBuffers(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

export const challenge = (data: Buffer | string): SaslServerStep => ({
  kind: "challenge",
  data: typeof data === "string" ? Buffer.from(data, "utf8") : data,
});

/** `detail` is logged: keep it to fixed text, never client data or secrets. */
export const failure = (reason: SaslFailureReason, detail?: string): SaslServerStep =>
  detail === undefined ? { kind: "failure", reason } : { kind: "failure", reason, detail };

/** The answer to any call on a mechanism object that has already finished (SECURITY rule 12). */
export const ALREADY_FINISHED = failure("malformed", "exchange already finished");
