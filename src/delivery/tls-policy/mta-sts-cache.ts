/**
 * The on-disk MTA-STS policy cache (RFC 8461 §5.1: a policy is kept for its max_age and survives
 * restarts, else a restart would open the window an attacker needs). One JSON file per domain,
 * written to a temporary name and renamed, so a crash never leaves half a policy.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { MtaStsPolicy } from "./types.js";

/** The file of a domain: its name when it is a plain host name, else a hash (never a path). */
export function cacheFileName(domain: string): string {
  return /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*$/.test(domain) && domain.length <= 253
    ? `${domain}.json`
    : `h-${createHash("sha256").update(domain).digest("hex").slice(0, 40)}.json`;
}

interface CacheFile {
  domain: string;
  policy: MtaStsPolicy;
}

function isPolicy(p: unknown): p is MtaStsPolicy {
  const o = p as MtaStsPolicy;
  return (
    typeof o === "object" &&
    o !== null &&
    (o.mode === "enforce" || o.mode === "testing" || o.mode === "none") &&
    Array.isArray(o.mx) &&
    o.mx.every((m) => typeof m === "string") &&
    Number.isInteger(o.maxAge) &&
    typeof o.id === "string" &&
    Number.isFinite(o.fetchedAt) &&
    typeof o.text === "string"
  );
}

export class MtaStsDiskCache {
  constructor(readonly dir: string) {}

  /** The stored policy, expired or not; undefined when there is none or the file is unreadable. */
  async read(domain: string): Promise<MtaStsPolicy | undefined> {
    try {
      const data = JSON.parse(await readFile(join(this.dir, cacheFileName(domain)), "utf8")) as CacheFile;
      return data.domain === domain && isPolicy(data.policy) ? data.policy : undefined;
    } catch {
      return undefined;
    }
  }

  async write(domain: string, policy: MtaStsPolicy): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const file = join(this.dir, cacheFileName(domain));
    const tmp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
    try {
      await writeFile(tmp, `${JSON.stringify({ domain, policy } satisfies CacheFile)}\n`);
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async remove(domain: string): Promise<void> {
    await rm(join(this.dir, cacheFileName(domain)), { force: true });
  }
}
