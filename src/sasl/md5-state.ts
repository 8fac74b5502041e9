/**
 * MD5 (RFC 1321) compression that can start from a stored chaining state.
 *
 * Node's crypto cannot resume a hash from an intermediate state, but CRAM-MD5 secrets are exactly
 * that: the MD5 state after the (key XOR ipad) and (key XOR opad) blocks of HMAC (RFC 2104), as
 * Dovecot's `{CRAM-MD5}` scheme stores them. Finishing HMAC from those states needs this file.
 * States are 16 bytes: the words A, B, C, D, each little-endian (the same layout as a digest).
 */
import type { CramMd5State } from "./types.js";

/** Per-round left-rotation amounts (RFC 1321 §3.4). */
const SHIFTS = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

/** K[i] = floor(abs(sin(i + 1)) * 2^32) (RFC 1321 §3.4); checked against crypto's MD5 in tests. */
const K = Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) >>> 0);

export const MD5_INITIAL_STATE: Buffer = Buffer.from("0123456789abcdeffedcba9876543210", "hex");

const rotl = (x: number, n: number): number => ((x << n) | (x >>> (32 - n))) >>> 0;

/** Process one 64-byte block at `offset`, updating `state` (4 words) in place. */
function compress(state: Uint32Array, block: Buffer, offset: number): void {
  const m = new Uint32Array(16);
  for (let i = 0; i < 16; i++) m[i] = block.readUInt32LE(offset + 4 * i);
  let a = state[0]!,
    b = state[1]!,
    c = state[2]!,
    d = state[3]!;
  for (let i = 0; i < 64; i++) {
    let f: number, g: number;
    if (i < 16) {
      f = (b & c) | (~b & d);
      g = i;
    } else if (i < 32) {
      f = (d & b) | (~d & c);
      g = (5 * i + 1) % 16;
    } else if (i < 48) {
      f = b ^ c ^ d;
      g = (3 * i + 5) % 16;
    } else {
      f = c ^ (b | ~d);
      g = (7 * i) % 16;
    }
    const rotated = rotl((a + f + K[i]! + m[g]!) >>> 0, SHIFTS[(i >> 4) * 4 + (i % 4)]!);
    a = d;
    d = c;
    c = b;
    b = (b + rotated) >>> 0;
  }
  state[0] = (state[0]! + a) >>> 0;
  state[1] = (state[1]! + b) >>> 0;
  state[2] = (state[2]! + c) >>> 0;
  state[3] = (state[3]! + d) >>> 0;
}

function readState(bytes: Buffer): Uint32Array {
  if (bytes.length !== 16) throw new RangeError("an MD5 state is 16 bytes");
  return Uint32Array.from([0, 1, 2, 3], (i) => bytes.readUInt32LE(4 * i));
}

function writeState(state: Uint32Array): Buffer {
  const out = Buffer.alloc(16);
  for (const [i, word] of state.entries()) out.writeUInt32LE(word, 4 * i);
  return out;
}

/** The chaining state after compressing one 64-byte block from MD5's initial state. */
export function md5StateAfterBlock(block: Buffer): Buffer {
  if (block.length !== 64) throw new RangeError("an MD5 block is 64 bytes");
  const state = readState(MD5_INITIAL_STATE);
  compress(state, block, 0);
  return writeState(state);
}

/**
 * Finish an MD5 hash whose first `bytesSoFar` bytes (a multiple of 64) produced `state`,
 * by hashing `data` and the padding for the total length. Returns the 16-byte digest.
 */
export function md5Resume(state: Buffer, bytesSoFar: number, data: Buffer): Buffer {
  if (bytesSoFar % 64 !== 0 || bytesSoFar < 0) throw new RangeError("bytesSoFar must be a multiple of 64");
  const words = readState(state);
  const total = bytesSoFar + data.length;
  const padded = Buffer.alloc(Math.ceil((data.length + 9) / 64) * 64);
  data.copy(padded);
  padded[data.length] = 0x80;
  const bits = total * 8; // a 64-bit little-endian bit count ends the padding
  padded.writeUInt32LE(bits % 2 ** 32, padded.length - 8);
  padded.writeUInt32LE(Math.floor(bits / 2 ** 32), padded.length - 4);
  for (let offset = 0; offset < padded.length; offset += 64) compress(words, padded, offset);
  return writeState(words);
}

/** HMAC-MD5(key, message) computed from a stored CRAM-MD5 secret instead of the key. */
export function hmacMd5FromSecret(secret: CramMd5State, message: Buffer): Buffer {
  const innerDigest = md5Resume(secret.inner, 64, message);
  return md5Resume(secret.outer, 64, innerDigest);
}
