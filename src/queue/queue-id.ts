/**
 * Queue ids: 10 base32 characters of the millisecond clock followed by 10 random ones.
 * They sort by arrival time, are unique without coordination (50 random bits per ms) and are
 * safe as file names (lower-case Crockford alphabet: no `/`, `.`, or look-alike letters).
 */
import { randomFillSync } from "node:crypto";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
const ID_PATTERN = /^[0-9a-hjkmnp-tv-z]{20}$/;

function base32(value: bigint, length: number): string {
  let out = "";
  for (let i = 0; i < length; i++) {
    out = ALPHABET[Number(value & 31n)] + out;
    value >>= 5n;
  }
  return out;
}

/** Random bytes drawn 4 KB at a time: one call into OpenSSL per ~585 ids instead of one per id. */
const randomPool = Buffer.alloc(4095);
let randomUsed = randomPool.length;

function sevenRandomBytes(): string {
  if (randomUsed + 7 > randomPool.length) {
    randomFillSync(randomPool);
    randomUsed = 0;
  }
  randomUsed += 7;
  return randomPool.toString("hex", randomUsed - 7, randomUsed);
}

export function newQueueId(nowMs: number = Date.now()): string {
  const random = BigInt("0x" + sevenRandomBytes()) & ((1n << 50n) - 1n);
  return base32(BigInt(Math.floor(nowMs)), 10) + base32(random, 10);
}

export function isQueueId(id: string): boolean {
  return ID_PATTERN.test(id);
}

/** Ids reach file paths (and later the CLI); anything else is refused before touching the disk. */
export function assertQueueId(id: string): void {
  if (!isQueueId(id)) throw new Error(`invalid queue id: ${JSON.stringify(id)}`);
}
