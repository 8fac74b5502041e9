/**
 * Delivery status notifications (RFC 3461 §6, RFC 3464) for the queue runner's hooks:
 *   onFinal    no recipient pending: one report per message for the failed recipients that asked
 *              for failure notices (NOTIFY absent or FAILURE) and the delivered ones that asked for
 *              success (NOTIFY=SUCCESS, unless the peer took the request over: RFC 3461 §6.2.2)
 *   onDeferred a delay warning once per message, after `delayWarningSec`, for NOTIFY=DELAY or absent
 * Reports go from the null sender to the original MAIL FROM and enter our own spool like any other
 * message. A message from the null sender is never reported on (RFC 3461 §6.2, RFC 5321 §4.5.5): no
 * bounce loops.
 *
 * REQUIRETLS (RFC 8689 §5): a report about a message sent with REQUIRETLS carries the header
 * section only and is itself tagged REQUIRETLS; one about a "TLS-Required: No" message is tagged
 * and headed the same way (§6).
 *
 * Backscatter (docs/SECURITY.md 11.3): a stranger on port 25 can write anyone's address in MAIL
 * FROM. Only a sender vouched for at intake (Envelope.senderVouched: authenticated, mynetworks,
 * local sendmail) gets what it asks for. Anyone else's NOTIFY=SUCCESS and DELAY are accepted and
 * ignored (RFC 3461 §4.1 makes them requests, not duties), and a failure report — which RFC 5321
 * §6.1 still requires — returns the header section only, whatever RET says: never a stranger's
 * body to a third party.
 *
 * Idempotent across crashes: the report's queue id is recorded in the original envelope before
 * the report is committed, and marked injected after. A rerun finds the record and either
 * completes it (the report is in the spool) or writes the report again (on a shared store under
 * the recorded id, so a slow first writer's late commit collides instead of sending a second).
 */
import { buildDsn, type DsnAction, type DsnRecipient } from "./dsn-message.js";
import { isSharedQueueStore, type QueueLease, type QueueStore } from "./store.js";
import type { Envelope, EnvelopeRecipient, NewEnvelope } from "./types.js";
import type { Log } from "../base/log.js";

export interface DsnNotifierOptions {
  /** Where the original is read and the report is queued. */
  spool: QueueStore;
  /** Reporting-MTA and the From: of every report. */
  hostname: string;
  /** Delivered to a local mailbox ("delivered") or handed on to a peer ("relayed")? */
  isLocalAddress(address: string): boolean;
  /** Seconds after arrival before a delay warning; 0 turns warnings off. */
  delayWarningSec: number;
  /** The queue lifetime, for Will-Retry-Until. */
  maxLifetimeSec: number;
  /** Tells the runner a report was committed (QueueRunner.enqueued). */
  enqueue(id: string): void;
  logger: Log;
  now?: () => number;
}

type NoticeKind = "final" | "delay";

const wantsFailure = (r: EnvelopeRecipient) => !r.notify || r.notify.includes("FAILURE");
// RFC 3461 §4.1: without NOTIFY an MTA may send FAILURE and DELAY notices.
const wantsDelay = (r: EnvelopeRecipient) => !r.notify || r.notify.includes("DELAY");
const wantsSuccess = (r: EnvelopeRecipient) => r.notify?.includes("SUCCESS") === true;

/** Envelope.senderVouched as recorded at intake; an envelope from before the field: authenticated only. */
export function senderVouched(env: Pick<Envelope, "senderVouched" | "client">): boolean {
  return env.senderVouched ?? env.client.authUser !== undefined;
}

export class DsnNotifier {
  private readonly now: () => number;

  constructor(private readonly opts: DsnNotifierOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** QueueRunner onFinal. */
  readonly onFinal = async (env: Envelope, _failed?: EnvelopeRecipient[], lease?: QueueLease): Promise<void> => {
    const vouched = senderVouched(env);
    const recipients: DsnRecipient[] = [];
    const ignored: string[] = [];
    for (const rcpt of env.recipients) {
      if (rcpt.status === "failed" && wantsFailure(rcpt)) recipients.push({ rcpt, action: "failed" });
      if (rcpt.status === "delivered" && wantsSuccess(rcpt) && !rcpt.dsnPassedOn) {
        if (!vouched) {
          ignored.push(rcpt.address);
          continue;
        }
        const action: DsnAction = this.opts.isLocalAddress(rcpt.address) ? "delivered" : "relayed";
        recipients.push({ rcpt, action });
      }
    }
    if (ignored.length > 0 && env.mailFrom !== "") {
      this.opts.logger.info(
        { event: "dsn-suppressed", id: env.id, reason: "success report for a sender not vouched for", recipients: ignored },
        "bounce: NOTIFY=SUCCESS ignored (sender neither authenticated nor in mynetworks)",
      );
    }
    await this.notify(env, "final", recipients, lease);
  };

  /** QueueRunner onDeferred. */
  readonly onDeferred = async (env: Envelope, lease?: QueueLease): Promise<void> => {
    if (this.opts.delayWarningSec <= 0) return;
    if (env.notices?.delay?.injected) return this.releaseReport(env.notices.delay.id);
    // A delay warning is a courtesy; to a possibly forged sender it is backscatter.
    if (!senderVouched(env)) return;
    const age = this.now() - Date.parse(env.receivedAt);
    if (age < this.opts.delayWarningSec * 1000) return;
    const recipients = env.recipients
      .filter((r) => r.status === "pending" && r.attempts > 0 && wantsDelay(r))
      .map((rcpt): DsnRecipient => ({ rcpt, action: "delayed" }));
    await this.notify(env, "delay", recipients, lease);
  };

  private async notify(env: Envelope, kind: NoticeKind, recipients: DsnRecipient[], lease?: QueueLease): Promise<void> {
    if (recipients.length === 0) return;
    if (env.mailFrom === "") {
      // Never answer a report (or any null-sender message) with another: that is how loops start.
      if (kind === "final") {
        this.opts.logger.warn(
          { event: "dsn-suppressed", id: env.id, reason: "null sender", recipients: recipients.map((r) => r.rcpt.address) },
          "bounce: not reporting on a message from the null sender",
        );
      }
      return;
    }
    const notices = (env.notices ??= {});
    const prior = notices[kind];
    if (prior?.injected) return this.releaseReport(prior.id);
    if (prior && (await this.opts.spool.has(prior.id))) {
      // A crash came after the report's commit and before it was marked: finish the bookkeeping only.
      prior.injected = true;
      await this.opts.spool.updateEnvelope(env, lease);
      await this.releaseReport(prior.id);
      this.opts.enqueue(prior.id);
      return;
    }

    // A shared store: a report written again after a takeover keeps the recorded id. If the node
    // that recorded it was only slow (its lease lapsed, it is still committing), one of the two
    // commits fails on that id, so the cluster sends one report, not two.
    const spool = this.opts.spool;
    const writer = prior && isSharedQueueStore(spool) ? await spool.openWriter(prior.id) : await spool.openWriter();
    try {
      notices[kind] = { id: writer.id, injected: false };
      await this.opts.spool.updateEnvelope(env, lease);
      // The body goes back only to a sender vouched for; anyone else gets the header section.
      // RFC 8689 §5: a REQUIRETLS message is reported as if RET=HDRS, whatever RET says.
      const returnFull = env.ret === "FULL" && kind === "final" && senderVouched(env) && !env.requireTls;
      const now = new Date(this.now());
      const retryUntil = new Date(Date.parse(env.receivedAt) + this.opts.maxLifetimeSec * 1000);
      const text = buildDsn({ reportingMta: this.opts.hostname, reportId: writer.id, env, recipients, returnFull, now, retryUntil });
      await writer.write(Buffer.from(text.head, "utf8"));
      await this.writeReturned(writer, env, returnFull);
      await writer.write(Buffer.from(text.tail, "utf8"));
      const report: NewEnvelope = {
        mailFrom: "",
        body: text.eightBit ? "8BITMIME" : "7BIT",
        smtputf8: env.smtputf8 || /[^\x00-\x7f]/.test(env.mailFrom) || undefined,
        client: { ip: "127.0.0.1", helo: this.opts.hostname, listener: "mta" },
        recipients: [{ address: env.mailFrom }],
        dsnOf: env.id,
        // RFC 8689 §5: the report about a REQUIRETLS message returns its header section only and
        // carries REQUIRETLS itself where the next hop offers it; from <> it is never held back
        // for a hop that does not (delivery: demandsOf, deliverToEndpoint). §6: a "TLS-Required:
        // No" original makes a report that asks the same.
        requireTls: env.requireTls || undefined,
        tlsRequiredNo: (!env.requireTls && env.tlsRequiredNo) || undefined,
        // Shared store: held until the original records it as sent, so no node delivers (and
        // removes) it before then — a node taking over would find it gone and write it again.
        held: isSharedQueueStore(spool) || undefined,
      };
      await writer.commit(report);
    } catch (err) {
      await writer.abort().catch(() => undefined);
      throw err;
    }
    notices[kind]!.injected = true;
    await this.opts.spool.updateEnvelope(env, lease);
    await this.releaseReport(writer.id);
    this.opts.logger.info(
      {
        event: kind === "final" ? "dsn-queued" : "delay-warning-queued",
        id: env.id,
        dsn: writer.id,
        to: env.mailFrom,
        recipients: recipients.map((r) => `${r.rcpt.address} ${r.action}`),
      },
      kind === "final" ? "bounce: delivery report queued" : "bounce: delay warning queued",
    );
    this.opts.enqueue(writer.id);
  }

  /** Shared store: lets the nodes deliver a report once its original has recorded it (see notify). */
  private async releaseReport(id: string): Promise<void> {
    const spool = this.opts.spool;
    if (!isSharedQueueStore(spool)) return;
    let report: Envelope;
    try {
      report = await spool.readEnvelope(id);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return; // released before, delivered since
      throw err;
    }
    if (!report.held) return;
    delete report.held;
    await spool.updateEnvelope(report);
  }

  /** The message (RET=FULL) or its header section (RET=HDRS, the default), streamed from the spool. */
  private async writeReturned(writer: { write(b: Buffer): Promise<void> }, env: Envelope, full: boolean): Promise<void> {
    const HEADER_CAP = 256 * 1024;
    let header = Buffer.alloc(0);
    for await (const chunk of this.opts.spool.message(env).open() as AsyncIterable<Buffer>) {
      if (full) {
        await writer.write(chunk);
        continue;
      }
      header = Buffer.concat([header, chunk]);
      if (header.subarray(0, 2).toString() === "\r\n") return; // no header section at all
      const end = header.indexOf("\r\n\r\n");
      // Up to and including the last header line's CRLF; the blank line is not part of it.
      if (end >= 0) return writer.write(header.subarray(0, end + 2));
      if (header.length >= HEADER_CAP) return writer.write(header.subarray(0, header.lastIndexOf("\r\n") + 2));
    }
    // A message without a body: all of it is header.
    if (!full) await writer.write(header);
  }
}
