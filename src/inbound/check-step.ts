/**
 * The inbound checks as a content step (src/smtp/content-steps.ts): for mail from a client that
 * is neither authenticated nor in mynetworks, SPF for MAIL FROM and HELO (started when the header
 * section is complete, while the body streams), DKIM verification of every signature over the
 * stored bytes as they stream, and DMARC with alignment (dmarc.ts) at the end. The result goes on
 * top as Authentication-Results: with our hostname as authserv-id; fields arriving in our name
 * were removed as the header section was read (smtp/auth-results-field.ts).
 *
 * mailauth reads the message from a PassThrough fed chunk by chunk; its DKIM verifier keeps the
 * header section and a running body hash per signature, never the body (README "Inbound checks":
 * RSS measured on a 25 MB message).
 */
import { PassThrough } from "node:stream";
import { dkimVerify } from "mailauth";
import type { ContentContext, ContentStep, ContentStepResult, StepRun } from "../smtp/content-steps.js";
import type { NewEnvelope } from "../queue/types.js";
import type { InfoWarnLog } from "../base/log.js";
import { reply } from "../base/reply.js";
import { policyRefusal, C552MailboxFull, Se534MsgTooBig } from "../base/reply-codes.js";
import { formatAuthResults, type MethodResult } from "./auth-results.js";
import type { InboundDns } from "./dns.js";
import { evaluateDmarc, type DmarcVerdict } from "./dmarc.js";
import { spfHelo, spfMailFrom, type SpfOutcome } from "./spf.js";

export type DmarcMode = "enforce" | "report" | "off";

/** The `inbound` config section (src/config/schema.ts). */
export interface InboundSettings {
  dmarc: DmarcMode;
  spfRejectFail: boolean;
  maxLookups: number;
  timeBudgetMs: number;
}

export interface InboundStepOptions {
  /** Our hostname: the authserv-id (RFC 8601 §2.5). */
  hostname: string;
  settings: InboundSettings;
  dns: InboundDns;
  /** Authenticated, or mynetworks on port 25: never checked, never refused (relay.mayRelay). */
  trusted(client: NewEnvelope["client"]): boolean;
  log: InfoWarnLog;
}

/** The field that marks mail a DMARC p=quarantine policy failed (README "Inbound checks"). */
export const QUARANTINE_FIELD = "X-Postern-Quarantine";

const CRLFCRLF = Buffer.from("\r\n\r\n");
/** Most message bytes queued for the DKIM verifier before it is given up (DESIGN principle 4). */
const MAX_QUEUED = 4 * 1024 * 1024;

type DkimOutcome = Awaited<ReturnType<typeof dkimVerify>>;

export function inboundCheckStep(opts: InboundStepOptions): ContentStep {
  return {
    name: "inbound-auth",
    begin(ctx) {
      if (opts.settings.dmarc === "off") return null;
      const client = ctx.envelope.client;
      if (client.authUser !== undefined || opts.trusted(client)) return null;
      return new InboundRun(opts, ctx);
    },
  };
}

/** Never rejects: a failed check is a result (temperror), not a failed step. */
function settle<T>(p: Promise<T> | null): Promise<T | Error | null> {
  return p === null ? Promise.resolve(null) : p.catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
}

class InboundRun implements StepRun {
  private readonly input = new PassThrough();
  private readonly dkim: Promise<DkimOutcome | Error | null>;
  private readonly spfMail: Promise<SpfOutcome | Error | null>;
  private readonly spfHelo: Promise<SpfOutcome | Error | null>;
  private readonly resolve: ReturnType<InboundDns["forMessage"]>;
  /** The header section ended (a blank line): body chunks follow it. */
  private readonly bodyFollows: boolean;
  /** Bytes came after a header section that did not end: it was over the limit. */
  private overflow = false;
  /** The verifier fell MAX_QUEUED behind the message and was stopped: its results are temperror. */
  private behind = false;

  constructor(
    private readonly opts: InboundStepOptions,
    private readonly ctx: ContentContext,
  ) {
    const env = ctx.envelope;
    this.resolve = opts.dns.forMessage({ maxLookups: opts.settings.maxLookups, budgetMs: opts.settings.timeBudgetMs });
    const query = { ip: env.client.ip, helo: env.client.helo, sender: env.mailFrom, hostname: opts.hostname, resolve: this.resolve };
    this.spfMail = settle(spfMailFrom(query));
    this.spfHelo = settle(spfHelo(query));
    this.dkim = settle(dkimVerify(this.input, { resolver: this.resolve as never, sender: env.mailFrom || undefined }));
    const section = ctx.headerSection;
    this.bodyFollows = section.equals(CRLFCRLF.subarray(2)) || section.subarray(-4).equals(CRLFCRLF);
    this.input.write(section);
  }

  body(chunk: Buffer): void {
    // A header section cut at the limit has no end: mailauth would hold every byte after it as
    // header. Nothing more goes in; finish() refuses the message.
    if (!this.bodyFollows) {
      this.overflow = true;
      return;
    }
    if (this.behind) return;
    // body() cannot wait: bytes the verifier has not read yet queue here. The hash runs far faster
    // than a network, but a hard bound keeps a stalled verifier from holding the message.
    if (this.input.writableLength + this.input.readableLength > MAX_QUEUED) {
      this.behind = true;
      this.input.destroy();
      return;
    }
    this.input.write(chunk);
  }

  abort(): void {
    this.input.destroy();
  }

  async finish(): Promise<ContentStepResult> {
    this.input.end();
    if (this.overflow || this.ctx.headers.truncated) {
      this.input.destroy();
      // We could neither check it nor remove a forged Authentication-Results: past the limit.
      return {
        refuse: {
          reply: reply(C552MailboxFull, Se534MsgTooBig, "Error: message header section too large"),
          reason: "header section over the headerBytes limit (inbound checks)",
        },
      };
    }
    // A verifier stopped by destroy() never finishes: it is not waited for.
    const [dkim, spfMail, spfHelo] = await Promise.all([
      this.behind ? new Error("DKIM verification fell behind the message") : this.dkim,
      this.spfMail,
      this.spfHelo,
    ]);
    const results: MethodResult[] = [];
    const spf = (o: SpfOutcome | Error | null, prop: "smtp.mailfrom" | "smtp.helo", subject: string) => {
      if (o === null) return;
      if (o instanceof Error) results.push({ method: "spf", result: "temperror", comment: o.message, props: [[prop, subject]] });
      else results.push({ method: "spf", result: o.result, comment: o.comment, props: [[prop, o.subject]] });
    };
    spf(spfMail, "smtp.mailfrom", this.ctx.envelope.mailFrom);
    spf(spfHelo, "smtp.helo", this.ctx.envelope.client.helo);
    const passedDkim: string[] = [];
    if (dkim instanceof Error || dkim === null) {
      results.push({ method: "dkim", result: "temperror", comment: dkim?.message ?? "not run", props: [] });
    } else {
      for (const r of dkim.results) {
        const props: [string, string][] = [];
        if (r.signingDomain) props.push(["header.d", r.signingDomain]);
        if (r.selector) props.push(["header.s", r.selector]);
        const algo = (r as { algo?: string }).algo;
        if (algo) props.push(["header.a", algo]);
        const b = (r as { signature?: string }).signature;
        if (b) props.push(["header.b", b.slice(0, 8)]);
        results.push({ method: "dkim", result: r.status.result, comment: r.status.comment || undefined, props });
        if (r.status.result === "pass" && r.signingDomain) passedDkim.push(r.signingDomain);
      }
    }
    const spfPassed = spfMail && !(spfMail instanceof Error) && spfMail.result === "pass" ? spfMail.domain : undefined;
    let verdict: DmarcVerdict | Error | null = null;
    if (!(dkim instanceof Error) && dkim !== null) {
      verdict = await evaluateDmarc({ headerFrom: dkim.headerFrom ?? [], spfDomain: spfPassed, dkimDomains: passedDkim, resolve: this.resolve }).catch(
        (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
      );
    }
    // A fail that an unanswered DNS query may have caused is no fail (RFC 7489 §6.6.2): no
    // permanent refusal for a resolver's bad minute.
    const unsure = results.some((r) => (r.method === "dkim" || (r.method === "spf" && r.props[0]?.[0] === "smtp.mailfrom")) && r.result === "temperror");
    if (verdict && !(verdict instanceof Error) && verdict.result === "fail" && unsure) {
      verdict = { ...verdict, result: "temperror", comment: `${verdict.comment ?? ""} SPF or DKIM could not be checked`.trim() };
    }
    if (verdict instanceof Error) results.push({ method: "dmarc", result: "temperror", comment: verdict.message, props: [] });
    else if (verdict) results.push({ method: "dmarc", result: verdict.result, comment: verdict.comment, props: [["header.from", verdict.fromDomain]] });
    else results.push({ method: "dmarc", result: "none", comment: "no From: domain", props: [] });

    const fields = [formatAuthResults(this.opts.hostname, results)];
    this.opts.log.info(
      {
        event: "inbound-auth",
        spf: results.filter((r) => r.method === "spf").map((r) => r.result),
        dkim: results.filter((r) => r.method === "dkim").map((r) => r.result),
        dmarc: verdict instanceof Error ? "temperror" : (verdict?.result ?? "none"),
        policy: verdict instanceof Error ? undefined : verdict?.policy,
        dnsLookups: this.resolve.used(),
      },
      "inbound checks",
    );
    if (this.opts.settings.dmarc === "enforce" && verdict && !(verdict instanceof Error) && verdict.result === "fail") {
      if (verdict.policy === "reject") {
        // RFC 7489 §6.7 / §10.3: refuse in the SMTP transaction, with the domain that asked for it.
        return {
          refuse: {
            reply: policyRefusal(550, `Error: message rejected by the DMARC policy of ${verdict.fromDomain}`),
            reason: `DMARC fail, p=reject (header.from=${verdict.fromDomain})`,
          },
        };
      }
      if (verdict.policy === "quarantine") fields.push(`${QUARANTINE_FIELD}: dmarc (header.from=${verdict.fromDomain} p=QUARANTINE)`);
    }
    return { prependHeaders: fields };
  }
}
