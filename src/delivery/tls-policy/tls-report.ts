/**
 * TLS-RPT (RFC 8460): the day's TLS session outcomes per policy domain, kept on disk, and the
 * aggregate report built from them (§4.4 JSON, gzip). Sending is in tls-report-send.ts.
 *
 * The counts live in memory per (UTC day, policy domain, policy) and are flushed to one JSON file
 * per day (temp + rename) on a short timer and on close, so a restart loses at most a few
 * seconds. record() never throws: reports are best effort and must not disturb delivery.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import type { Log } from "../../base/log.js";
import type { TlsFailureDetail, TlsReportRecorder, TlsRptPolicy, TlsRptResultType, TlsSessionOutcome } from "./types.js";

/** RFC 8460 §4.3, every result-type a report may carry. */
export const TLSRPT_RESULT_TYPES: readonly TlsRptResultType[] = [
  "starttls-not-supported",
  "certificate-host-mismatch",
  "certificate-expired",
  "certificate-not-trusted",
  "validation-failure",
  "tlsa-invalid",
  "dnssec-invalid",
  "dane-required",
  "sts-policy-fetch-error",
  "sts-policy-invalid",
  "sts-webpki-invalid",
];

/** One failure-details entry as kept (§4.4), with its count. */
export interface FailureDetailCount extends TlsFailureDetail {
  count: number;
}

/** The counts of one policy of one domain on one day. */
export interface PolicyCounts {
  policy: TlsRptPolicy;
  successes: number;
  failures: number;
  details: FailureDetailCount[];
}

/** How far the sending of one domain's report got (tls-report-send.ts). */
export interface ReportSendState {
  attempts: number;
  /** ms since the epoch: not before. */
  nextAttemptAt?: number;
  /** The report-id's unique part, kept so a retry carries the same report-id (receivers drop duplicates). */
  unique?: string;
  /** rua URIs that took the report. */
  sentTo: string[];
  /** Sent everywhere, dropped after the last attempt, or no rua to send to. */
  done: boolean;
}

/** One day's file: counts per domain, and the send state per domain once sending began. */
export interface DayState {
  day: string;
  domains: Record<string, PolicyCounts[]>;
  sending: Record<string, ReportSendState>;
}

export interface TlsReportStoreOptions {
  /** The folder of the day files (config outbound.tlsRpt.stateDir). */
  dir: string;
  log?: Log;
  now?: () => number;
  /** How often dirty days are written; default 2 s. */
  flushMs?: number;
  /** Distinct failure-details per policy; more are folded into one entry per result-type. Default 100. */
  maxFailureDetails?: number;
  /** Policy domains per day; outcomes for more are not counted. Default 10000. */
  maxDomains?: number;
  /** Distinct policies per domain per day. Default 8. */
  maxPoliciesPerDomain?: number;
}

const DAY_MS = 86_400_000;
const DAY_FILE = /^(\d{4}-\d{2}-\d{2})\.json$/;
/** Longest string kept from an outcome: the MX names and texts come from other people's DNS and servers. */
const MAX_FIELD = 255;

/** The UTC day ("YYYY-MM-DD") of a time. */
export const utcDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

const clip = (s: string | undefined): string | undefined => (s === undefined ? undefined : s.slice(0, MAX_FIELD));
const policyKey = (p: TlsRptPolicy): string => JSON.stringify([p.type, p.strings, p.domain, p.mxHosts ?? []]);

/**
 * The recorder the delivery path calls once per TLS session attempt. Implements TlsReportRecorder;
 * open() loads the days on disk, close() writes what is pending.
 */
export class TlsReportStore implements TlsReportRecorder {
  private readonly days = new Map<string, DayState>();
  private readonly dirty = new Set<string>();
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private capLogged = new Set<string>();

  constructor(private readonly o: TlsReportStoreOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Loads the day files and starts the flush timer. */
  async open(): Promise<void> {
    await mkdir(this.o.dir, { recursive: true });
    for (const name of await readdir(this.o.dir)) {
      const day = DAY_FILE.exec(name)?.[1];
      if (!day) continue;
      try {
        const state = JSON.parse(await readFile(join(this.o.dir, name), "utf8")) as DayState;
        if (state.day === day && typeof state.domains === "object") this.days.set(day, { ...state, sending: state.sending ?? {} });
      } catch (err) {
        this.o.log?.warn({ event: "tlsrpt-state-unreadable", file: name, error: String(err) }, "tls-rpt: a day file could not be read; its counts are lost");
      }
    }
    this.timer = setInterval(() => void this.flush(), this.o.flushMs ?? 2000);
    this.timer.unref();
  }

  /** TlsReportRecorder: count one session. Never throws. */
  record(outcome: TlsSessionOutcome): void {
    try {
      this.add(outcome);
    } catch (err) {
      this.o.log?.warn({ event: "tlsrpt-record-failed", error: String(err) }, "tls-rpt: an outcome was not counted");
    }
  }

  private add(outcome: TlsSessionOutcome): void {
    const day = utcDay(this.now());
    const domain = outcome.policy.domain.toLowerCase().replace(/\.$/, "");
    if (domain === "") return;
    let state = this.days.get(day);
    if (!state) {
      state = { day, domains: {}, sending: {} };
      this.days.set(day, state);
    }
    let policies = state.domains[domain];
    if (!policies) {
      if (Object.keys(state.domains).length >= (this.o.maxDomains ?? 10_000)) {
        this.capped(day, "domains");
        return;
      }
      policies = state.domains[domain] = [];
    }
    const policy: TlsRptPolicy = {
      type: outcome.policy.type,
      strings: outcome.policy.strings.slice(0, 100).map((s) => s.slice(0, 1000)),
      domain,
      ...(outcome.policy.mxHosts ? { mxHosts: outcome.policy.mxHosts.slice(0, 100).map((h) => h.slice(0, MAX_FIELD)) } : {}),
    };
    const key = policyKey(policy);
    let counts = policies.find((p) => policyKey(p.policy) === key);
    if (!counts) {
      if (policies.length >= (this.o.maxPoliciesPerDomain ?? 8)) {
        this.capped(day, `policies of ${domain}`);
        return;
      }
      counts = { policy, successes: 0, failures: 0, details: [] };
      policies.push(counts);
    }
    this.dirty.add(day);
    const f = outcome.failure;
    if (!f) {
      counts.successes++;
      return;
    }
    counts.failures++;
    // Absent fields stay absent (not undefined): the day file reads back equal.
    let detail = Object.fromEntries(
      Object.entries({
        resultType: f.resultType,
        sendingMtaIp: clip(f.sendingMtaIp),
        receivingMxHostname: clip(f.receivingMxHostname?.toLowerCase()),
        receivingIp: clip(f.receivingIp),
        additionalInformation: clip(f.additionalInformation),
        failureReasonCode: clip(f.failureReasonCode),
      }).filter(([, v]) => v !== undefined),
    ) as Omit<FailureDetailCount, "count">;
    const same = (d: Omit<FailureDetailCount, "count">) => (e: FailureDetailCount) =>
      e.resultType === d.resultType &&
      e.sendingMtaIp === d.sendingMtaIp &&
      e.receivingMxHostname === d.receivingMxHostname &&
      e.receivingIp === d.receivingIp &&
      e.additionalInformation === d.additionalInformation &&
      e.failureReasonCode === d.failureReasonCode;
    let entry = counts.details.find(same(detail));
    if (!entry && counts.details.length >= (this.o.maxFailureDetails ?? 100)) {
      // Bounded: MX names and error texts are chosen by others. Past the cap, one entry per result-type.
      detail = { resultType: f.resultType, failureReasonCode: "further failures of this type, not itemised" };
      entry = counts.details.find(same(detail));
    }
    if (entry) entry.count++;
    else counts.details.push({ ...detail, count: 1 });
  }

  private capped(day: string, what: string): void {
    if (this.capLogged.has(`${day} ${what}`)) return;
    this.capLogged.add(`${day} ${what}`);
    this.o.log?.warn({ event: "tlsrpt-capped", day, what }, `tls-rpt: too many ${what} today; further ones are not counted`);
  }

  /** Days before `today` (UTC) that have counts, oldest first. */
  pastDays(now: number): string[] {
    const today = utcDay(now);
    return [...this.days.keys()].filter((d) => d < today).sort();
  }

  /** The state of a day (live: the sender updates `sending` and calls markDirty). */
  day(day: string): DayState | undefined {
    return this.days.get(day);
  }

  /** The day's state changed outside record() (the sender's bookkeeping). */
  markDirty(day: string): void {
    this.dirty.add(day);
  }

  /** Forgets a day whose reports are all done, and removes its file. */
  async forget(day: string): Promise<void> {
    this.days.delete(day);
    this.dirty.delete(day);
    await this.flushing;
    await unlink(join(this.o.dir, `${day}.json`)).catch(() => undefined);
  }

  /** Writes every changed day (temp + rename: a crash leaves the old file or the new one). */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      for (const day of [...this.dirty]) {
        this.dirty.delete(day);
        const state = this.days.get(day);
        if (!state) continue;
        const file = join(this.o.dir, `${day}.json`);
        const tmp = `${file}.${process.pid}.tmp`;
        try {
          await writeFile(tmp, JSON.stringify(state));
          await rename(tmp, file);
        } catch (err) {
          this.dirty.add(day);
          this.o.log?.warn({ event: "tlsrpt-flush-failed", day, error: String(err) }, "tls-rpt: counts not written; retrying");
        }
      }
    });
    return this.flushing;
  }

  /** Stops the timer and writes what is pending. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}

// ---- The report (RFC 8460 §4.4) ------------------------------------------------------------------

/** The report's JSON, field names as RFC 8460 §4.4 spells them. */
export interface TlsRptReport {
  "organization-name": string;
  "date-range": { "start-datetime": string; "end-datetime": string };
  "contact-info": string;
  "report-id": string;
  policies: {
    policy: { "policy-type": TlsRptPolicy["type"]; "policy-string": string[]; "policy-domain": string; "mx-host"?: string[] };
    summary: { "total-successful-session-count": number; "total-failure-session-count": number };
    "failure-details"?: {
      "result-type": TlsRptResultType;
      "sending-mta-ip"?: string;
      "receiving-mx-hostname"?: string;
      "receiving-ip"?: string;
      "failed-session-count": number;
      "additional-information"?: string;
      "failure-reason-code"?: string;
    }[];
  }[];
}

export interface BuildReportInput {
  /** The UTC day, "YYYY-MM-DD". */
  day: string;
  domain: string;
  policies: PolicyCounts[];
  /** organization-name. */
  organization: string;
  /** contact-info: an email address or URI. */
  contact: string;
  /** Our host name: the right side of the report-id and the submitter. */
  hostname: string;
  /** Letters and digits; default random. Also the unique-id of the file name (§5.1). */
  unique?: string;
}

/** Start and end of a UTC day in ms. */
export function dayRange(day: string): { start: number; end: number } {
  const start = Date.parse(`${day}T00:00:00Z`);
  return { start, end: start + DAY_MS - 1000 };
}

const rfc3339 = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
/** additional-information is a URI (§4.4); free text goes to failure-reason-code. */
const isUri = (s: string): boolean => /^[a-z][a-z0-9+.-]*:\S+$/i.test(s);

/**
 * The aggregate report of one policy domain for one UTC day (RFC 8460 §4.4). The report-id has the
 * form of a msg-id's content ("<day>_<domain>_<unique>@<hostname>"), so it can go in the Subject
 * as §5.3 asks.
 */
export function buildReport(input: BuildReportInput): TlsRptReport {
  const { start, end } = dayRange(input.day);
  const unique = input.unique ?? randomBytes(6).toString("hex");
  return {
    "organization-name": input.organization,
    "date-range": { "start-datetime": rfc3339(start), "end-datetime": rfc3339(end) },
    "contact-info": input.contact,
    "report-id": `${input.day}_${input.domain}_${unique}@${input.hostname}`,
    policies: input.policies.map((p) => ({
      policy: {
        "policy-type": p.policy.type,
        "policy-string": p.policy.strings,
        "policy-domain": p.policy.domain,
        ...(p.policy.mxHosts && p.policy.mxHosts.length > 0 ? { "mx-host": p.policy.mxHosts } : {}),
      },
      summary: { "total-successful-session-count": p.successes, "total-failure-session-count": p.failures },
      ...(p.details.length > 0
        ? {
            "failure-details": p.details.map((d) => {
              const text = [d.failureReasonCode, d.additionalInformation && !isUri(d.additionalInformation) ? d.additionalInformation : undefined]
                .filter((t) => t !== undefined && t !== "")
                .join("; ");
              return {
                "result-type": d.resultType,
                ...(d.sendingMtaIp ? { "sending-mta-ip": d.sendingMtaIp } : {}),
                ...(d.receivingMxHostname ? { "receiving-mx-hostname": d.receivingMxHostname } : {}),
                ...(d.receivingIp ? { "receiving-ip": d.receivingIp } : {}),
                "failed-session-count": d.count,
                ...(d.additionalInformation && isUri(d.additionalInformation) ? { "additional-information": d.additionalInformation } : {}),
                ...(text !== "" ? { "failure-reason-code": text } : {}),
              };
            }),
          }
        : {}),
    })),
  };
}

/** The report as sent: gzip of its JSON (§5.3 application/tlsrpt+gzip). */
export const gzipReport = (report: TlsRptReport): Buffer => gzipSync(Buffer.from(JSON.stringify(report), "utf8"));

/**
 * §5.1 file name: sender "!" policy-domain "!" begin-timestamp "!" end-timestamp "!" unique-id
 * ".json.gz", timestamps in seconds since the epoch.
 */
export function reportFileName(report: TlsRptReport, submitter: string, domain: string): string {
  const start = Date.parse(report["date-range"]["start-datetime"]) / 1000;
  const end = Date.parse(report["date-range"]["end-datetime"]) / 1000;
  const unique = (/_([A-Za-z0-9]+)@/.exec(report["report-id"])?.[1] ?? "0").replace(/[^A-Za-z0-9]/g, "");
  return `${submitter}!${domain}!${start}!${end}!${unique}.json.gz`;
}

// ---- The _smtp._tls record (RFC 8460 §3) ---------------------------------------------------------

export type TlsRptRecordParse = { ok: true; rua: string[]; extensions: Record<string, string> } | { ok: false; problem: string };

const EXT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
const EXT_VALUE = /^[\x21-\x3a\x3c\x3e-\x7e]+$/;

/**
 * RFC 8460 §3: "v=TLSRPTv1" first, then fields separated by ";" (white space around allowed), one
 * rua= with comma-separated mailto: or https: URIs; other fields are extensions (name=value).
 */
export function parseTlsRptRecord(record: string): TlsRptRecordParse {
  const fields = record.split(/[ \t]*;[ \t]*/);
  if (fields[0] !== "v=TLSRPTv1") return { ok: false, problem: 'the record must start with "v=TLSRPTv1"' };
  if (fields.length < 2) return { ok: false, problem: "no rua= field" };
  // A trailing ";" is allowed (§3 [field-delim]).
  if (fields.at(-1) === "") fields.pop();
  let rua: string[] | undefined;
  const extensions: Record<string, string> = {};
  for (const field of fields.slice(1)) {
    const eq = field.indexOf("=");
    if (eq <= 0) return { ok: false, problem: `${JSON.stringify(field)} is not name=value` };
    const name = field.slice(0, eq);
    const value = field.slice(eq + 1);
    if (name === "rua") {
      if (rua) return { ok: false, problem: "rua= appears twice" };
      rua = value.split(/[ \t]*,[ \t]*/);
      for (const uri of rua) {
        if (!/^(mailto:[^\s,;]+@[^\s,;]+|https:\/\/[^\s,;]+)$/i.test(uri))
          return { ok: false, problem: `rua ${JSON.stringify(uri)} is not a mailto: or https: URI` };
      }
    } else if (name === "v") return { ok: false, problem: "v= appears twice" };
    else if (!EXT_NAME.test(name) || !EXT_VALUE.test(value)) return { ok: false, problem: `${JSON.stringify(field)} is not a valid extension` };
    else extensions[name] = value;
  }
  if (!rua) return { ok: false, problem: "no rua= field" };
  return { ok: true, rua, extensions };
}

/** What `_smtp._tls.DOMAIN` says. */
export type TlsRptLookup =
  | { kind: "none" }
  | { kind: "record"; record: string; rua: string[] }
  | { kind: "invalid"; records: string[]; problem: string }
  | { kind: "error"; detail: string };

/** The TXT lookup's resolver (a dns.promises.Resolver on the configured servers). */
export interface TxtResolver {
  resolveTxt(name: string): Promise<string[][]>;
}

/**
 * RFC 8460 §3: records not starting with "v=TLSRPTv1" are discarded; unless exactly one is left
 * and it parses, the domain does not take reports.
 */
export async function lookupTlsRpt(resolver: TxtResolver, domain: string): Promise<TlsRptLookup> {
  let records: string[];
  try {
    records = (await resolver.resolveTxt(`_smtp._tls.${domain}`)).map((chunks) => chunks.join(""));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENODATA" || code === "ENOTFOUND") return { kind: "none" };
    return { kind: "error", detail: code ?? String(err) };
  }
  const ours = records.filter((r) => /^v=TLSRPTv1[ \t]*;/.test(r));
  if (ours.length === 0) return { kind: "none" };
  if (ours.length > 1) return { kind: "invalid", records: ours, problem: `${ours.length} v=TLSRPTv1 records: none is used (RFC 8460 §3)` };
  const parsed = parseTlsRptRecord(ours[0]!);
  return parsed.ok ? { kind: "record", record: ours[0]!, rua: parsed.rua } : { kind: "invalid", records: ours, problem: parsed.problem };
}
