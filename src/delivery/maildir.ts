/**
 * Local delivery into a Maildir, per maildir(5) (SECURITY rule 18): write the file in tmp/ under a
 * unique name, fsync it, rename it into new/, fsync new/. Only then is delivery durable and may the
 * queue mark the recipient delivered.
 *
 * The message bytes are stored exactly as spooled (CRLF line ends); Dovecot reads those as-is.
 */
import { closeSync, openSync, renameSync, unlinkSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { join } from "node:path";
import { normaliseDomain } from "../base/domain.js";
import { DirSyncer, fdatasync, writeFully } from "../queue/durable-io.js";
import type { MessageSource } from "../queue/types.js";

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

/**
 * One group-committing fsync of new/ per Maildir: concurrent deliveries to one mailbox (a list,
 * a busy user) share the directory fsync, as the spool's commits do. The map only forgets when it
 * grows large; a DirSyncer is a few bytes.
 */
const newDirSyncers = new Map<string, DirSyncer>();

function newDirSyncer(maildirPath: string): DirSyncer {
  let syncer = newDirSyncers.get(maildirPath);
  if (!syncer) {
    if (newDirSyncers.size >= 10_000) newDirSyncers.clear();
    newDirSyncers.set(maildirPath, (syncer = new DirSyncer(join(maildirPath, "new"))));
  }
  return syncer;
}

/** Maildirs known to exist: their three mkdirs are not repeated for every delivery. */
const knownMaildirs = new Set<string>();

async function ensureMaildir(maildirPath: string): Promise<void> {
  for (const sub of ["tmp", "new", "cur"]) {
    await mkdir(join(maildirPath, sub), { recursive: true, mode: 0o700 });
  }
  knownMaildirs.add(maildirPath);
}

/** Creates tmp/<name>; if the Maildir vanished since it was last seen (an admin), makes it again. */
async function createTmpFile(maildirPath: string, tmpFile: string): Promise<number> {
  if (!knownMaildirs.has(maildirPath)) await ensureMaildir(maildirPath);
  try {
    return openSync(tmpFile, "wx", 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    await ensureMaildir(maildirPath);
    return openSync(tmpFile, "wx", 0o600);
  }
}

/**
 * Delivers the queued message into the Maildir; returns the file name now in new/.
 * Creating, closing and renaming are synchronous (page-cache metadata, a few µs each); the data
 * and the fsyncs go through the thread pool (see src/queue/spool-writer.ts).
 */
export async function deliverToMaildir(maildirPath: string, message: MessageSource, opts: MaildirDeliveryOptions): Promise<string> {
  const name = uniqueMaildirName();
  const tmpFile = join(maildirPath, "tmp", name);
  const fd = await createTmpFile(maildirPath, tmpFile);
  let open = true;
  try {
    // Streamed chunk by chunk for large messages: memory stays flat (DESIGN principle 4). The
    // prefix rides with the first chunk: a small message is one write.
    let prefix = opts.prefix && opts.prefix.length > 0 ? opts.prefix : null;
    const source = message.open();
    for await (const chunk of source) {
      await writeFully(fd, prefix ? Buffer.concat([prefix, chunk as Buffer]) : (chunk as Buffer));
      prefix = null;
    }
    if (prefix) await writeFully(fd, prefix); // an empty message
    if (opts.fsync) await fdatasync(fd);
    open = false;
    closeSync(fd);
    // Unique names make rename safe (Dovecot does the same instead of link+unlink).
    renameSync(tmpFile, join(maildirPath, "new", name));
  } catch (err) {
    if (open) closeSync(fd);
    try {
      unlinkSync(tmpFile);
    } catch {
      // already gone
    }
    throw err;
  }
  if (opts.fsync) await newDirSyncer(maildirPath).sync();
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
    domain: normaliseDomain(address.domain),
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
