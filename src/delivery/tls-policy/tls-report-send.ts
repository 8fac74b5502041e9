/**
 * TLS-RPT delivery (RFC 8460 §5): after a UTC day ends, one report per policy domain to every rua
 * of its `_smtp._tls` record — mailto: as a message through our own queue (§5.3), https: as a POST
 * (§5.2). A report that could not be sent is retried a few times, then dropped with a log line:
 * reports are best effort.
 */
import { randomBytes } from "node:crypto";
import { request } from "node:https";
import type { LookupFunction } from "node:net";
import { isIP } from "node:net";
import type { Log } from "../../base/log.js";
import { rfc5322Date } from "../../queue/dsn-message.js";
import type { NewEnvelope, SpoolWriter } from "../../queue/types.js";
import {
  buildReport,
  dayRange,
  gzipReport,
  lookupTlsRpt,
  type ReportSendState,
  reportFileName,
  type TlsReportStore,
  type TlsRptReport,
  type TxtResolver,
} from "./tls-report.js";

/** The resolver the sender uses: TXT for `_smtp._tls`, A/AAAA for https: report hosts. */
export interface ReportResolver extends TxtResolver {
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
}

export interface TlsReportSenderOptions {
  store: TlsReportStore;
  resolver: ReportResolver;
  /** Where mailto: reports are queued (the spool) and how the runner learns of them. */
  openWriter(): Promise<SpoolWriter>;
  enqueue(id: string): void;
  /** organization-name (§4.4). */
  organization: string;
  /** contact-info (§4.4); also the From: of mailed reports when it is an address. */
  contact: string;
  /** Our host name: the Submitter (§5.3) and the report-id's right side. */
  hostname: string;
  /** CA bundle for https: report endpoints; default the system's. The certificate is always verified. */
  ca?: Buffer;
  /** How long after the day's end reports go out (config sendAfterMinutes). */
  sendAfterMs: number;
  log: Log;
  /** Attempts per report before it is dropped; default 4. */
  maxAttempts?: number;
  /** First retry delay, doubling; default 1 h. */
  retryMs?: number;
  httpsTimeoutMs?: number;
  /** DKIM: header fields to put on top of a mailed report (given the message), or none. */
  sign?(message: Buffer): Promise<string[]>;
}

const DAY_MS = 86_400_000;

/** §5.3 media type of a gzipped report. */
export const TLSRPT_GZIP_TYPE = "application/tlsrpt+gzip";

export class TlsReportSender {
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: TlsReportSenderOptions) {}

  /** Calls sendDue every `everyMs` (default 5 min) and once now. */
  start(everyMs = 300_000): void {
    const tick = () => void this.sendDue(Date.now());
    this.timer = setInterval(tick, everyMs);
    this.timer.unref();
    tick();
  }

  /** Stops the timer and waits for a round in progress. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /**
   * Sends the reports that are due at `now`: those of days that ended at least sendAfterMs ago,
   * not yet sent, whose retry time has come. One round at a time; never throws.
   */
  sendDue(now: number): Promise<void> {
    if (this.running) return this.running;
    this.running = this.round(now)
      .catch((err) => this.o.log.warn({ event: "tlsrpt-send-failed", error: String(err) }, "tls-rpt: a sending round failed"))
      .finally(() => (this.running = undefined));
    return this.running;
  }

  private async round(now: number): Promise<void> {
    const { store } = this.o;
    for (const day of store.pastDays(now)) {
      if (now < dayRange(day).start + DAY_MS + this.o.sendAfterMs) continue;
      const state = store.day(day)!;
      for (const domain of Object.keys(state.domains)) {
        const s = (state.sending[domain] ??= { attempts: 0, sentTo: [], done: false });
        if (s.done || (s.nextAttemptAt !== undefined && now < s.nextAttemptAt)) continue;
        await this.sendOne(day, domain, s, now);
        store.markDirty(day);
      }
      if (Object.keys(state.domains).every((d) => state.sending[d]?.done)) {
        await store.forget(day);
        this.o.log.info({ event: "tlsrpt-day-done", day }, "tls-rpt: every report of the day sent or dropped");
      }
    }
    await store.flush();
  }

  private async sendOne(day: string, domain: string, s: ReportSendState, now: number): Promise<void> {
    const log = this.o.log;
    s.attempts++;
    const found = await lookupTlsRpt(this.o.resolver, domain);
    if (found.kind === "none" || found.kind === "invalid") {
      // §3: no (usable) record: the domain takes no reports.
      s.done = true;
      log.info({ event: "tlsrpt-no-record", day, domain, problem: found.kind === "invalid" ? found.problem : undefined }, "tls-rpt: no report address");
      return;
    }
    const failures: string[] = [];
    if (found.kind === "error") failures.push(`_smtp._tls.${domain} TXT: ${found.detail}`);
    else {
      const state = this.o.store.day(day)!;
      s.unique ??= randomBytes(6).toString("hex");
      const report = buildReport({
        unique: s.unique,
        day,
        domain,
        policies: state.domains[domain]!,
        organization: this.o.organization,
        contact: this.o.contact,
        hostname: this.o.hostname,
      });
      const gz = gzipReport(report);
      for (const uri of found.rua) {
        if (s.sentTo.includes(uri)) continue;
        try {
          if (uri.toLowerCase().startsWith("mailto:")) await this.mail(uri, domain, report, gz);
          else await this.post(uri, gz);
          s.sentTo.push(uri);
          log.info({ event: "tlsrpt-sent", day, domain, to: uri, reportId: report["report-id"] }, "tls-rpt: report sent");
        } catch (err) {
          failures.push(`${uri}: ${(err as Error).message}`);
        }
      }
    }
    if (failures.length === 0) {
      s.done = true;
      return;
    }
    const max = this.o.maxAttempts ?? 4;
    if (s.attempts >= max) {
      s.done = true;
      log.warn({ event: "tlsrpt-dropped", day, domain, attempts: s.attempts, errors: failures }, "tls-rpt: report dropped after the last attempt");
      return;
    }
    s.nextAttemptAt = now + (this.o.retryMs ?? 3_600_000) * 2 ** (s.attempts - 1);
    log.warn({ event: "tlsrpt-deferred", day, domain, attempts: s.attempts, errors: failures }, "tls-rpt: report not sent; will retry");
  }

  /** §5.3: a multipart/report message into our own queue, from the null sender (no bounce loops between reporters). */
  private async mail(uri: string, domain: string, report: TlsRptReport, gz: Buffer): Promise<void> {
    const to = mailtoAddresses(uri);
    if (to.length === 0) throw new Error("no address in the mailto: URI");
    let message = buildReportMessage({
      report,
      gzip: gz,
      domain,
      submitter: this.o.hostname,
      from: /^[^\s@<>]+@[^\s@<>]+$/.test(this.o.contact) ? this.o.contact : `postmaster@${this.o.hostname}`,
      to,
      date: new Date(),
    });
    if (this.o.sign) {
      const fields = await this.o.sign(message).catch((err) => {
        this.o.log.warn({ event: "tlsrpt-sign-failed", error: String(err) }, "tls-rpt: report not DKIM-signed");
        return [];
      });
      if (fields.length > 0) message = Buffer.concat([Buffer.from(fields.map((f) => `${f}\r\n`).join(""), "latin1"), message]);
    }
    const writer = await this.o.openWriter();
    try {
      await writer.write(message);
      const env: NewEnvelope = {
        mailFrom: "",
        body: "7BIT",
        client: { ip: "127.0.0.1", helo: this.o.hostname, listener: "mta" },
        recipients: to.map((address) => ({ address })),
        // RFC 8460 §5.3: a report is delivered despite TLS failures (they may be what it reports),
        // and its own session is not counted in the next report.
        tlsRequiredNo: true,
        tlsReport: true,
      };
      await writer.commit(env);
    } catch (err) {
      await writer.abort().catch(() => undefined);
      throw err;
    }
    this.o.enqueue(writer.id);
  }

  /** §5.2: POST the gzip; any 2xx is success. The server's certificate is verified; redirects are not followed. */
  private post(uri: string, gz: Buffer): Promise<void> {
    const url = new URL(uri);
    const lookup = resolverLookup(this.o.resolver);
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method: "POST",
          headers: { "Content-Type": TLSRPT_GZIP_TYPE, "Content-Length": gz.length },
          timeout: this.o.httpsTimeoutMs ?? 30_000,
          lookup,
          ...(this.o.ca ? { ca: this.o.ca } : {}),
        },
        (res) => {
          res.resume();
          const code = res.statusCode ?? 0;
          if (code >= 200 && code < 300) resolve();
          else reject(new Error(`HTTP ${code}`));
        },
      );
      req.on("timeout", () => req.destroy(new Error("timed out")));
      req.on("error", reject);
      req.end(gz);
    });
  }
}

/** A `lookup` for https.request answering from our resolver (the configured DNS servers). */
function resolverLookup(resolver: ReportResolver): LookupFunction {
  return ((hostname: string, options: { all?: boolean }, callback: (...a: unknown[]) => void) => {
    const done = (addresses: { address: string; family: number }[]) => {
      if (addresses.length === 0) {
        const err = Object.assign(new Error(`no address for ${hostname}`), { code: "ENOTFOUND" });
        return callback(err);
      }
      if (options.all) callback(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    };
    if (isIP(hostname)) return done([{ address: hostname, family: isIP(hostname) }]);
    void Promise.allSettled([resolver.resolve4(hostname), resolver.resolve6(hostname)]).then(([v4, v6]) =>
      done([
        ...(v4.status === "fulfilled" ? v4.value.map((address) => ({ address, family: 4 })) : []),
        ...(v6.status === "fulfilled" ? v6.value.map((address) => ({ address, family: 6 })) : []),
      ]),
    );
  }) as LookupFunction;
}

/** The addresses of a mailto: URI (RFC 6068: comma-separated, percent-encoded; the query is ignored). */
export function mailtoAddresses(uri: string): string[] {
  const path = uri.replace(/^mailto:/i, "").split("?")[0]!;
  return path
    .split(",")
    .map((a) => {
      try {
        return decodeURIComponent(a).trim();
      } catch {
        return "";
      }
    })
    .filter((a) => /^[^\s@<>]+@[^\s@<>]+$/.test(a));
}

export interface ReportMessageInput {
  report: TlsRptReport;
  gzip: Buffer;
  domain: string;
  /** The submitter's domain name (§5.3: Submitter, TLS-Report-Submitter). */
  submitter: string;
  from: string;
  to: string[];
  date: Date;
}

/**
 * RFC 8460 §5.3: Subject "Report Domain: D Submitter: S Report-ID: <ID>", the TLS-Report-Domain and
 * TLS-Report-Submitter fields, multipart/report with report-type="tlsrpt", a short text part and
 * the gzip as application/tlsrpt+gzip named per §5.1. CRLF line ends, 7-bit (base64).
 */
export function buildReportMessage(m: ReportMessageInput): Buffer {
  const id = m.report["report-id"];
  const boundary = `tlsrpt-${randomBytes(12).toString("hex")}`;
  const filename = reportFileName(m.report, m.submitter, m.domain);
  const range = m.report["date-range"];
  const b64 = m.gzip.toString("base64").replace(/.{1,76}/g, "$&\r\n");
  const lines = [
    `From: <${m.from}>`,
    `To: ${m.to.map((a) => `<${a}>`).join(", ")}`,
    `Date: ${rfc5322Date(m.date)}`,
    `Subject: Report Domain: ${m.domain} Submitter: ${m.submitter} Report-ID: <${id}>`,
    `Message-ID: <${randomBytes(12).toString("hex")}.tlsrpt@${m.submitter}>`,
    `TLS-Report-Domain: ${m.domain}`,
    `TLS-Report-Submitter: ${m.submitter}`,
    "Auto-Submitted: auto-generated",
    // RFC 8689 §5: onward hops, too, deliver it whatever their TLS policy says (RFC 8460 §5.3).
    "TLS-Required: No",
    "MIME-Version: 1.0",
    `Content-Type: multipart/report; report-type="tlsrpt";`,
    `\tboundary="${boundary}"`,
    "",
    "This is a MIME-formatted message.",
    "",
    `--${boundary}`,
    "Content-Type: text/plain; charset=us-ascii",
    "Content-Transfer-Encoding: 7bit",
    "",
    `This is an aggregate TLS report (RFC 8460) from ${m.submitter}`,
    `for ${m.domain}, covering ${range["start-datetime"]} to ${range["end-datetime"]}.`,
    "",
    `--${boundary}`,
    `Content-Type: ${TLSRPT_GZIP_TYPE}`,
    "Content-Transfer-Encoding: base64",
    `Content-Disposition: attachment; filename="${filename}"`,
    "",
  ];
  return Buffer.from(`${lines.join("\r\n")}\r\n${b64}--${boundary}--\r\n`, "latin1");
}
