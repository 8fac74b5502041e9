/**
 * Local delivery into a Maildir, per maildir(5) (SECURITY rule 18): write the file in tmp/ under a
 * unique name, fsync it, rename it into new/, fsync new/. Only then is delivery durable and may the
 * queue mark the recipient delivered.
 *
 * The message bytes are stored exactly as spooled (CRLF line ends); Dovecot reads those as-is.
 */
import { createReadStream } from "node:fs";
import { mkdir, open, rename, unlink, type FileHandle } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { join } from "node:path";

export interface MaildirDeliveryOptions {
  /** Bytes written before the message, e.g. "Return-Path: <a@b>\r\nDelivered-To: c@d\r\n". */
  prefix?: Buffer;
  fsync: boolean;
}

let deliveriesByThisProcess = 0;

/** maildir(5) host part: "/" and ":" would break the name, so they are written as octal escapes. */
function safeHostname(): string {
  return hostname().replace(/\//g, "\\057").replace(/:/g, "\\072") || "localhost";
}

/** `<sec>.M<usec>P<pid>Q<n>R<random>.<host>` — unique per maildir(5) even across pid reuse. */
export function uniqueMaildirName(nowMs: number = Date.now()): string {
  const seconds = Math.floor(nowMs / 1000);
  const usec = Math.floor((nowMs % 1000) * 1000);
  deliveriesByThisProcess++;
  const random = randomBytes(4).toString("hex");
  return `${seconds}.M${usec}P${process.pid}Q${deliveriesByThisProcess}R${random}.${safeHostname()}`;
}

async function writeAll(handle: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) offset += (await handle.write(data, offset, data.length - offset)).bytesWritten;
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Delivers the spooled message file into the Maildir; returns the file name now in new/. */
export async function deliverToMaildir(
  maildirPath: string,
  messagePath: string,
  opts: MaildirDeliveryOptions,
): Promise<string> {
  for (const sub of ["tmp", "new", "cur"]) {
    await mkdir(join(maildirPath, sub), { recursive: true, mode: 0o700 });
  }
  const name = uniqueMaildirName();
  const tmpFile = join(maildirPath, "tmp", name);
  let handle: FileHandle | undefined;
  try {
    handle = await open(tmpFile, "wx", 0o600);
    if (opts.prefix && opts.prefix.length > 0) await writeAll(handle, opts.prefix);
    // Streamed chunk by chunk: memory stays flat whatever the message size (DESIGN principle 4).
    for await (const chunk of createReadStream(messagePath)) await writeAll(handle, chunk as Buffer);
    if (opts.fsync) await handle.datasync();
    await handle.close();
    handle = undefined;
    // Unique names make rename safe (Dovecot does the same instead of link+unlink).
    await rename(tmpFile, join(maildirPath, "new", name));
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await unlink(tmpFile).catch(() => undefined);
    throw err;
  }
  if (opts.fsync) await fsyncDir(join(maildirPath, "new"));
  return name;
}

/** Is `segment` usable as exactly one path component? (SECURITY rule 6) */
function isSafeSegment(segment: string): boolean {
  if (segment.length === 0 || segment.length > 255) return false;
  if (segment.startsWith(".")) return false; // also excludes "." and ".."
  // No separators, NUL or other control characters.
  return !/[/\\\x00-\x1f\x7f]/.test(segment);
}

/**
 * Fills a configured Maildir template ("/var/mail/{domain}/{localpart}/Maildir") for a user.
 * Each value must be a safe single path segment (lower-cased); anything else throws, so an
 * address can never walk the file system. Unknown placeholders are configuration errors.
 */
export function maildirPathFor(template: string, address: { localPart: string; domain: string }): string {
  const values: Record<string, string> = {
    localpart: address.localPart.toLowerCase(),
    domain: address.domain.toLowerCase().replace(/\.$/, ""),
  };
  for (const [key, value] of Object.entries(values)) {
    if (!isSafeSegment(value)) throw new Error(`unsafe ${key} for a maildir path: ${JSON.stringify(value)}`);
  }
  return template.replace(/\{([^{}]*)\}/g, (_match, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`unknown placeholder {${key}} in maildir template`);
    return value;
  });
}
