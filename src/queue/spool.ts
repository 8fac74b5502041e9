/**
 * The durable spool: the source of truth for queued mail (DESIGN principle 3, SECURITY rules 16–18).
 *
 *   <dir>/msg/<id>                  message bytes, exactly as received (created there at DATA)
 *   <dir>/env/<id>.json             envelope (JSON.stringify only) with the message's size and SHA-256;
 *                                   a message is queued once its envelope is whole and matches
 *   <dir>/tmp/                      envelope replacements being written; emptied on start
 *   <dir>/quarantine/               envelopes found without a message, kept for the admin
 *   <dir>/in-use                    present while a server has the spool open: found at start, it
 *                                   means the last stop was unclean and recovery checks every hash.
 *                                   Written by init(), so only once the data directory is locked;
 *                                   a start that fails after init() removes it again (close()).
 *
 * One process owns a spool directory at a time, and init() assumes it is that process: recovery
 * removes messages without an envelope, which in another running server are messages still being
 * received. The caller holds the data directory's lock (data-lock.ts) before init() and for as
 * long as it writes to the spool; the server from start to exit.
 */
import { createReadStream, openSync, readFileSync, renameSync, statSync } from "node:fs";
import { mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { createHash, randomBytes } from "node:crypto";
import { pipeline } from "node:stream/promises";
import { join } from "node:path";
import { DirSyncer, writeSmallFile } from "./durable-io.js";
import { assertQueueId, isQueueId } from "./queue-id.js";
import { fileMessage } from "./message-file.js";
import { SpoolMessageWriter, type SpoolFault, type SpoolFiles } from "./spool-writer.js";
import { LeaseLostError, type QueueLease, type QueueStore } from "./store.js";
import type { Envelope, MessageSource, SpoolWriter } from "./types.js";
import type { Log } from "../base/log.js";

export interface SpoolOptions {
  /** fsync files and directories before acknowledging (default true; only tests turn it off). */
  fsync?: boolean;
  logger?: Log;
  /** Clock for receivedAt, ids and lease expiry (ms since epoch). */
  now?: () => number;
  /** TEST ONLY: makes the spool writer fail as a full or broken disk would (spool-writer.ts). */
  fault?: SpoolFault;
}

export interface RecoveryReport {
  /** Half-written files removed from tmp/. */
  removedTmp: number;
  /** Messages whose envelope never committed: never acknowledged, so removed. */
  removedOrphanMessages: string[];
  /**
   * Envelopes cut short by a crash during commit (they do not parse, or their message's size or
   * SHA-256 differs): never acknowledged, so removed with their message.
   */
  removedIncomplete: string[];
  /** The last stop was unclean (the in-use marker was there): every message's hash was checked. */
  uncleanStop: boolean;
  /** Envelopes without a message, moved to quarantine/. */
  quarantinedEnvelopes: string[];
  /** Messages in the queue after recovery. */
  queued: number;
}

const ENV_SUFFIX = ".json";
const IN_USE = "in-use";

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === "ENOENT";
}

/**
 * unlink(2) stays on the thread pool: on ext4 it frees the file's blocks inside a journal
 * transaction and was measured blocking the event loop (16 % of a profile) when run inline.
 */
async function unlinkIfPresent(path: string): Promise<void> {
  await unlink(path).catch((err) => {
    if (!isNotFound(err)) throw err;
  });
}

/**
 * A lease of the file spool. One process owns the spool (data-lock.ts), so leases live in its
 * memory: the queue runner's per-message lock. Expiry only lets a later claim take over a lease
 * its holder never gave back; a change under a lease checks that it is still the current one.
 */
class FileLease implements QueueLease {
  constructor(
    private readonly leases: Map<string, FileLease>,
    readonly id: string,
    readonly expiresAt: number,
  ) {}

  async release(): Promise<void> {
    if (this.leases.get(this.id) === this) this.leases.delete(this.id);
  }
}

/** The file spool: the QueueStore of a single node (store.ts). */
export class Spool implements QueueStore, SpoolFiles {
  readonly dir: string;
  readonly fsync: boolean;
  readonly now: () => number;
  private readonly logger?: Log;
  private readonly fault?: SpoolFault;
  private readonly leases = new Map<string, FileLease>();
  private readonly msgSyncer: DirSyncer;
  private readonly envSyncer: DirSyncer;
  /** Ids renamed into place whose commit has not resolved yet: not yet part of the queue. */
  private readonly committing = new Set<string>();
  /**
   * Envelopes this process committed and nobody has read back yet: the first delivery attempt,
   * usually milliseconds later, takes it from here instead of reading the file just written.
   */
  private readonly fresh = new Map<string, Envelope>();

  constructor(dir: string, opts: SpoolOptions = {}) {
    this.dir = dir;
    this.fsync = opts.fsync ?? true;
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
    this.fault = opts.fault;
    this.msgSyncer = new DirSyncer(join(dir, "msg"), this.fsync);
    this.envSyncer = new DirSyncer(join(dir, "env"), this.fsync);
  }

  /** Directory fsyncs issued so far (group commit makes this much smaller than 2 × commits). */
  get dirSyncCount(): number {
    return this.msgSyncer.syncCount + this.envSyncer.syncCount;
  }

  tmpPath(name: string): string {
    return join(this.dir, "tmp", name);
  }

  messagePath(id: string): string {
    assertQueueId(id);
    return join(this.dir, "msg", id);
  }

  envelopePath(id: string): string {
    assertQueueId(id);
    return join(this.dir, "env", id + ENV_SUFFIX);
  }

  /**
   * Creates the layout and repairs whatever a crash left behind. Only under the data directory's
   * lock (lockDataDir): run beside a live server, recovery would delete what it is receiving.
   */
  async init(): Promise<RecoveryReport> {
    for (const sub of ["", "tmp", "msg", "env", "quarantine"]) {
      await mkdir(join(this.dir, sub), { recursive: true, mode: 0o700 });
    }
    const uncleanStop = await stat(join(this.dir, IN_USE)).then(
      () => true,
      (err) => {
        if (isNotFound(err)) return false;
        throw err;
      },
    );
    const report: RecoveryReport = { removedTmp: 0, removedOrphanMessages: [], removedIncomplete: [], quarantinedEnvelopes: [], queued: 0, uncleanStop };

    for (const name of await readdir(join(this.dir, "tmp"))) {
      await unlink(this.tmpPath(name)).catch((err) => {
        if (!isNotFound(err)) throw err;
      });
      report.removedTmp++;
    }

    const messages = new Set((await readdir(join(this.dir, "msg"))).filter(isQueueId));
    const envelopes = new Set(
      (await readdir(join(this.dir, "env")))
        .filter((n) => n.endsWith(ENV_SUFFIX) && isQueueId(n.slice(0, -ENV_SUFFIX.length)))
        .map((n) => n.slice(0, -ENV_SUFFIX.length)),
    );

    for (const id of messages) {
      if (envelopes.has(id)) continue;
      // The envelope rename is the commit point: without it the message was never acknowledged.
      await unlink(this.messagePath(id));
      report.removedOrphanMessages.push(id);
      this.logger?.warn({ event: "spool-orphan-removed", id }, "spool recovery: removed message without envelope (never acknowledged)");
    }
    for (const id of envelopes) {
      if (messages.has(id)) {
        if (await this.committedWhole(id, uncleanStop)) {
          report.queued++;
          continue;
        }
        // Its commit was cut short, so it was never acknowledged: the client will send it again.
        await unlink(this.envelopePath(id));
        await unlink(this.messagePath(id));
        report.removedIncomplete.push(id);
        this.logger?.warn({ event: "spool-incomplete-removed", id }, "spool recovery: removed a message whose commit did not complete (never acknowledged)");
        continue;
      }
      await rename(this.envelopePath(id), join(this.dir, "quarantine", id + ENV_SUFFIX));
      report.quarantinedEnvelopes.push(id);
      this.logger?.error({ event: "spool-quarantined", id }, "spool recovery: envelope without message moved to quarantine/");
    }

    if (report.removedOrphanMessages.length + report.removedIncomplete.length > 0) await this.msgSyncer.sync();
    if (report.quarantinedEnvelopes.length + report.removedIncomplete.length > 0) await this.envSyncer.sync();
    if (report.quarantinedEnvelopes.length > 0) await new DirSyncer(join(this.dir, "quarantine"), this.fsync).sync();

    // Durable before the first message is accepted, so a crash from now on is recognised.
    if (!uncleanStop) {
      await (await open(join(this.dir, IN_USE), "w", 0o600)).close();
      await new DirSyncer(this.dir, this.fsync).sync();
    }
    return report;
  }

  /**
   * Whether an envelope found at start belongs to a completed commit: it parses, and its message
   * has the recorded size and — after an unclean stop, when data may be missing although the
   * envelope is not — the recorded SHA-256. Envelopes from before sha256 existed are trusted.
   */
  private async committedWhole(id: string, checkHash: boolean): Promise<boolean> {
    let env: Envelope;
    try {
      env = await this.readEnvelope(id);
    } catch {
      return false;
    }
    const size = (await stat(this.messagePath(id))).size;
    if (size !== env.size) return false;
    if (!checkHash || env.sha256 === undefined) return true;
    const hash = createHash("sha256");
    await pipeline(createReadStream(this.messagePath(id)), hash);
    return hash.digest("hex") === env.sha256;
  }

  /** A clean stop: the next start need not check hashes. Call after the last write has finished. */
  async close(): Promise<void> {
    await unlink(join(this.dir, IN_USE)).catch((err) => {
      if (!isNotFound(err)) throw err;
    });
    await new DirSyncer(this.dir, this.fsync).sync();
  }

  /** Starts a new message. Nothing is visible to list() until the writer's commit() resolves. */
  openWriter(): Promise<SpoolWriter> {
    return SpoolMessageWriter.open(this, this.fault);
  }

  /** Ids of committed messages, oldest first. */
  async list(): Promise<string[]> {
    const names = await readdir(join(this.dir, "env"));
    const ids: string[] = [];
    for (const name of names) {
      if (!name.endsWith(ENV_SUFFIX)) continue;
      const id = name.slice(0, -ENV_SUFFIX.length);
      if (isQueueId(id) && !this.committing.has(id)) ids.push(id);
    }
    return ids.sort();
  }

  async readEnvelope(id: string): Promise<Envelope> {
    const fresh = this.fresh.get(id);
    if (fresh) {
      this.fresh.delete(id);
      return fresh;
    }
    const text = readFileSync(this.envelopePath(id), "utf8"); // small, and likely in the page cache
    const env = JSON.parse(text) as Envelope;
    if (typeof env !== "object" || env === null || env.id !== id || !Array.isArray(env.recipients)) {
      throw new Error(`corrupt envelope for ${id}`);
    }
    return env;
  }

  async has(id: string): Promise<boolean> {
    return stat(this.envelopePath(id)).then(
      () => !this.committing.has(id),
      () => false,
    );
  }

  async claim(id: string, ttlMs: number): Promise<QueueLease | null> {
    assertQueueId(id);
    const t = this.now();
    const held = this.leases.get(id);
    if (held && held.expiresAt > t) return null;
    const lease = new FileLease(this.leases, id, t + ttlMs);
    this.leases.set(id, lease);
    return lease;
  }

  private checkLease(id: string, lease: QueueLease | undefined): void {
    if (lease !== undefined && this.leases.get(id) !== lease) throw new LeaseLostError(id);
  }

  /** The message file, with the envelope's headerPrefix on top (types.ts says why it is kept apart). */
  message(env: Envelope): MessageSource {
    const prefix = env.headerPrefix ? Buffer.from(env.headerPrefix, "utf8") : undefined;
    return fileMessage(this.messagePath(env.id), env.size, prefix);
  }

  /** Atomically replaces the envelope: tmp file, fsync, rename over the old one, fsync env/. */
  async updateEnvelope(env: Envelope, lease?: QueueLease): Promise<void> {
    this.checkLease(env.id, lease);
    const target = this.envelopePath(env.id);
    this.fresh.delete(env.id);
    // Refuse to resurrect a removed message as an envelope without bytes.
    statSync(this.messagePath(env.id));
    const tmp = this.tmpPath(`${env.id}.${randomBytes(6).toString("hex")}.json`);
    try {
      await writeSmallFile(openSync(tmp, "wx", 0o600), JSON.stringify(env), this.fsync);
      renameSync(tmp, target);
    } catch (err) {
      await unlinkIfPresent(tmp);
      throw err;
    }
    await this.envSyncer.sync();
  }

  /** Removes a message: envelope first (it leaves the queue), then the bytes. */
  async remove(id: string, lease?: QueueLease): Promise<void> {
    this.checkLease(id, lease);
    this.fresh.delete(id);
    await unlinkIfPresent(this.envelopePath(id));
    // Durable before the bytes go, so a crash never leaves an envelope pointing at nothing.
    await this.envSyncer.sync();
    await unlinkIfPresent(this.messagePath(id));
  }

  // ---- used by SpoolMessageWriter ----

  /** A committed envelope, kept for its first reader (bounded: a backlog reads from disk). */
  rememberFresh(env: Envelope): void {
    if (this.fresh.size < 1000) this.fresh.set(env.id, env);
  }

  markCommitting(id: string): void {
    this.committing.add(id);
  }

  unmarkCommitting(id: string): void {
    this.committing.delete(id);
  }

  syncMessageDir(): Promise<void> {
    return this.msgSyncer.sync();
  }

  syncEnvelopeDir(): Promise<void> {
    return this.envSyncer.sync();
  }
}
