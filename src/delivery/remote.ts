/**
 * Delivery over SMTP to one destination: a smarthost, or a domain's MX hosts in order
 * (RFC 5321 §5.1: try the next host when one cannot be reached or will not talk; once a
 * transaction has started its replies stand). All recipients for the destination share one
 * transaction; sessions come from the pool (reuse, concurrency limits).
 */
import type { Envelope, EnvelopeRecipient, RecipientResult } from "../queue/types.js";
import type { MessageSource } from "../queue/types.js";
import type { MxResolver } from "./mx.js";
import { SmtpClient, SmtpClientError, type SmtpTlsMode } from "./smtp-client.js";
import type { SmtpPool } from "./smtp-pool.js";
import type { TlsRequirement } from "./transport.js";
import type { Log } from "../base/log.js";
import { demandsOf, HostCheck, type HostPlan, OutboundTlsPolicy, resultTypeOf, sessionFailureDetail } from "./tls-policy/policy.js";
import type { TlsPolicyName, TlsRptResultType } from "./tls-policy/types.js";

export interface SmtpEndpoint {
  host: string;
  port: number;
  tls: SmtpTlsMode;
  rejectUnauthorized?: boolean;
  ca?: string | Buffer;
  servername?: string;
  auth?: { username: string; password: string; mechanism?: string };
  timeoutMs?: number;
  /** Permit AUTH without TLS (test rigs only). */
  allowPlaintextAuth?: boolean;
  /** Checks the peer after the TLS handshake (DANE, MTA-STS): see TlsParams.verifyPeer. */
  verifyPeer?: (socket: import("node:tls").TLSSocket) => string | null;
}

/** What a TLS policy asks of one session (MX delivery under policy.ts, or a REQUIRETLS relay). */
export interface EndpointPolicy {
  /** Part of the pool key: sessions set up under different policies are never shared. */
  key: string;
  /** RFC 8689 §4.2.1: the peer must offer REQUIRETLS (after TLS); MAIL FROM carries it. */
  requireTls: boolean;
  /** Once per new session attempt: the connected client, or what ended the attempt before MAIL. */
  onSession?(result: { client?: SmtpClient; err?: unknown }): void;
}

export interface RemoteContext {
  pool: SmtpPool;
  heloName: string;
  logger: Log;
  /** Hosts tried per attempt at most (Postfix smtp_mx_address_limit is 5). */
  maxHosts?: number;
  /** MTA-STS, DANE, TLS-RPT (issue 15); without it MX delivery is opportunistic. */
  tlsPolicy?: OutboundTlsPolicy;
}

type Outcome = RecipientResult["outcome"];

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function tlsModeOf(req: TlsRequirement | undefined, fallback: SmtpTlsMode): SmtpTlsMode {
  if (req === "none") return "none";
  if (req === "may") return "starttls-opportunistic";
  if (req === "must") return "starttls-required";
  return fallback;
}

/** True when the message holds a byte with the high bit set (needs 8BITMIME, RFC 6152). */
async function hasEightBit(message: MessageSource): Promise<boolean> {
  for await (const chunk of message.open()) {
    if ((chunk as Buffer).some((b) => b >= 0x80)) return true;
  }
  return false;
}

/** Delivers to the MX hosts of `domain`, each under the TLS policy that applies to it (policy.ts). */
export async function deliverViaMx(
  ctx: RemoteContext,
  domain: string,
  resolver: MxResolver,
  endpointFor: (host: string, address: string) => SmtpEndpoint,
  env: Envelope,
  message: MessageSource,
  recipients: EnvelopeRecipient[],
  /** The route says tls=none: no STARTTLS, no policy (a REQUIRETLS message then bounces). */
  plainOnly = false,
): Promise<RecipientResult[]> {
  const everyone = (outcome: Outcome, detail: string, tlsPolicy?: TlsPolicyName) => recipients.map((r) => ({ address: r.address, outcome, detail, tlsPolicy }));
  const route = await resolver.resolve(domain);
  if (!route.ok) {
    ctx.logger.warn({ event: "mx-error", id: env.id, domain, detail: route.detail }, "delivery: MX lookup gave no usable host");
    return everyone(route.outcome, route.detail);
  }
  const demands = demandsOf(env);
  if (plainOnly && demands.requireTls) {
    return everyone("failed", `550 5.7.10 REQUIRETLS: the route to ${domain} is configured without TLS`, "none");
  }
  const tls = ctx.tlsPolicy ?? new OutboundTlsPolicy({});
  const sts = plainOnly ? ({ kind: "none" } as const) : await tls.forDomain(domain);
  // RFC 8461 §4.1: under enforce only MX hosts named by the policy may be used.
  const mismatch = tls.mxMismatch(
    domain,
    sts,
    route.hosts.map((h) => h.name),
    demands,
  );
  if (mismatch) {
    ctx.logger.warn(
      { event: "mx-policy-mismatch", id: env.id, domain, tlsPolicy: "mta-sts-enforce", detail: mismatch },
      "delivery: no MX host allowed by MTA-STS",
    );
    return everyone("deferred", mismatch, "mta-sts-enforce");
  }
  // RFC 7672 §2.2.1: the hosts' TLSA records count only if the MX RRset was authenticated.
  const mx = plainOnly ? ({ kind: "insecure" } as const) : await tls.mxStatus(domain);
  if (mx.kind === "failed" && !demands.tlsRequiredNo) {
    ctx.logger.warn(
      { event: "mx-dnssec-unknown", id: env.id, domain, tlsPolicy: "dane", detail: mx.detail },
      "delivery: DNSSEC status of the MX records unknown",
    );
    return everyone("deferred", mx.detail, "dane");
  }
  // RFC 8460 §5.3: the sessions that carry TLS-RPT reports are not counted in reports.
  const countSessions = env.tlsReport !== true;
  const candidates = route.hosts.flatMap((h) => h.addresses.map((a) => ({ name: h.name, address: a })));
  const plans = new Map<string, HostPlan>();
  let lastError = "no MX host could be reached";
  let lastPolicy: TlsPolicyName = plainOnly ? "none" : "opportunistic";
  let tried = 0;
  let requireTlsRefusals = 0;
  for (const c of candidates.slice(0, ctx.maxHosts ?? 5)) {
    const base = endpointFor(c.name, c.address);
    let plan = plans.get(c.name);
    if (!plan) {
      plan = plainOnly
        ? { kind: "connect", policy: "none", starttlsRequired: false, enforce: false, check: "none", usable: [], port: base.port, label: "none" }
        : await tls.planHost(domain, sts, c.name, base.port, demands, mx.kind === "secure");
      plans.set(c.name, plan);
    }
    tried++;
    lastPolicy = plan.policy;
    if (plan.kind === "skip") {
      lastError = plan.detail;
      if (plan.requireTlsRefusal) requireTlsRefusals++;
      ctx.logger.warn(
        { event: "mx-host-skipped", id: env.id, domain, host: c.name, address: c.address, tlsPolicy: plan.policy, detail: plan.detail },
        "delivery: MX host not usable under the TLS policy",
      );
      continue;
    }
    const connectPlan = plan;
    const check = new HostCheck(connectPlan, c.name, tls.deps);
    let policyDetail: string | undefined;
    const ep: SmtpEndpoint = {
      ...base,
      tls: plainOnly ? "none" : connectPlan.starttlsRequired || base.tls === "starttls-required" ? "starttls-required" : "starttls-opportunistic",
      // Policy checks run after the handshake (verifyPeer) so their result can be reported and worded.
      verifyPeer: connectPlan.check === "none" ? undefined : check.verifyPeer,
    };
    const onSession = (r: { client?: SmtpClient; err?: unknown }) => {
      if (r.err !== undefined) policyDetail = sessionFailureDetail(connectPlan, c.name, r.err, check);
      if (!connectPlan.rpt || !countSessions) return;
      let failure: { resultType: TlsRptResultType; detail: string } | undefined = check.failure;
      if (!failure && r.err !== undefined) {
        const resultType = resultTypeOf(r.err);
        if (!resultType) return; // the connection broke before any TLS: no TLS session to report
        failure = { resultType, detail: errorText(r.err) };
      }
      if (!failure && r.client && !r.client.secure) failure = { resultType: "starttls-not-supported", detail: `${c.name} did not offer STARTTLS` };
      if (!failure && sts.kind === "fetch-failed" && connectPlan.policy === "opportunistic") failure = { resultType: sts.resultType, detail: sts.detail };
      // Plain opportunistic sessions are the norm without a policy: counted for TLS-RPT, not logged.
      if (failure && connectPlan.check !== "none") {
        ctx.logger.warn(
          {
            event: "tls-policy-failure",
            id: env.id,
            domain,
            host: c.name,
            address: c.address,
            tlsPolicy: connectPlan.policy,
            resultType: failure.resultType,
            detail: failure.detail,
          },
          connectPlan.enforce ? "delivery: TLS policy failed, host not used" : "delivery: TLS policy failed, delivering anyway (reported)",
        );
      }
      tls.record({
        policy: connectPlan.rpt,
        failure: failure && { resultType: failure.resultType, receivingMxHostname: c.name, receivingIp: c.address, additionalInformation: failure.detail },
      });
    };
    const policy: EndpointPolicy = { key: `${connectPlan.policy}|${connectPlan.enforce}|${demands.requireTls}`, requireTls: demands.requireTls, onSession };
    const attempt = await deliverToEndpoint(ctx, domain, ep, env, message, recipients, policy);
    if (attempt.kind === "done") return attempt.results.map((r) => ({ ...r, tlsPolicy: connectPlan.policy }));
    if (attempt.requireTlsRefusal) requireTlsRefusals++;
    // A policy failure is worded with its host already ("451 4.7.5 DANE: …"); others get the host in front.
    lastError = attempt.requireTlsRefusal ? attempt.error : policyDetail?.startsWith("451 4.7.5 ") ? policyDetail : `${c.name}[${c.address}]: ${attempt.error}`;
    ctx.logger.warn(
      { event: "mx-host-failed", id: env.id, domain, host: c.name, address: c.address, tlsPolicy: connectPlan.policy, err: lastError },
      "delivery: MX host failed, trying the next",
    );
    if (attempt.permanent) return everyone("failed", lastError, connectPlan.policy);
  }
  // RFC 8689 §4.2.1: no host could take it with REQUIRETLS: the message is returned (5.7.30).
  if (tried > 0 && requireTlsRefusals === tried) return everyone("failed", lastError, lastPolicy);
  return everyone("deferred", lastError, lastPolicy);
}

export type EndpointAttempt =
  | { kind: "done"; results: RecipientResult[] }
  /** Could not start a transaction with this host: another host may do. */
  | {
      kind: "unreachable";
      error: string;
      permanent: boolean;
      requireTlsRefusal?: boolean;
      /** No TLS, or none that verified (STARTTLS missing, certificate refused), before MAIL. */
      tlsFailure?: boolean;
    };

/** One session (possibly reused) to one host, one transaction for all recipients. */
export async function deliverToEndpoint(
  ctx: RemoteContext,
  destination: string,
  ep: SmtpEndpoint,
  env: Envelope,
  message: MessageSource,
  recipients: EnvelopeRecipient[],
  policy?: EndpointPolicy,
): Promise<EndpointAttempt> {
  const sessionKey = [ep.host, ep.port, ep.tls, ep.rejectUnauthorized ?? "", ep.servername ?? "", ep.auth?.username ?? "", policy?.key ?? ""].join("|");
  const connect = async () => {
    let client: SmtpClient;
    try {
      client = await SmtpClient.connect({
        host: ep.host,
        port: ep.port,
        tls: ep.tls,
        servername: ep.servername,
        rejectUnauthorized: ep.rejectUnauthorized,
        ca: ep.ca,
        heloName: ctx.heloName,
        timeoutMs: ep.timeoutMs,
        allowPlaintextAuth: ep.allowPlaintextAuth,
        verifyPeer: ep.verifyPeer,
      });
    } catch (err) {
      policy?.onSession?.({ err });
      throw err;
    }
    policy?.onSession?.({ client });
    try {
      if (ep.auth) await client.auth(ep.auth.mechanism ?? "auto", { username: ep.auth.username, password: ep.auth.password });
    } catch (err) {
      client.close();
      throw err;
    }
    return client;
  };
  let started = false;
  try {
    return await ctx.pool.withSession(destination, sessionKey, connect, async (client) => {
      const everyone = (outcome: Outcome, detail: string): EndpointAttempt => ({
        kind: "done",
        results: recipients.map((r) => ({ address: r.address, outcome, detail })),
      });
      // RFC 6152: 8-bit content may not go to a peer without 8BITMIME. We do not downgrade
      // (rewriting MIME parts would break signatures); the sender learns why.
      if (env.body === "8BITMIME" && !client.capabilities.eightBitMime && (await hasEightBit(message))) {
        return { value: everyone("failed", "554 5.6.3 8-bit message and the peer does not support 8BITMIME"), reusable: true };
      }
      // RFC 8689 §4.2.1: a REQUIRETLS message goes only over TLS to a peer that offers REQUIRETLS.
      if (policy?.requireTls && !(client.secure && client.capabilities.requireTls)) {
        const error = `550 5.7.30 REQUIRETLS support required: ${ep.servername ?? ep.host} does not offer REQUIRETLS${client.secure ? "" : " over TLS"}`;
        return { value: { kind: "unreachable", error, permanent: false, requireTlsRefusal: true } as EndpointAttempt, reusable: true };
      }
      started = true;
      const sent = await client.sendMail({
        from: env.mailFrom,
        to: recipients.map((r) => ({ address: r.address, notify: r.notify, orcpt: r.orcpt })),
        size: message.size,
        body8bit: env.body === "8BITMIME",
        smtputf8: env.smtputf8,
        ret: env.ret,
        envid: env.envid,
        // RFC 8689 §5: a report about a REQUIRETLS message keeps the tag where the hop offers it.
        requireTls: policy?.requireTls || (env.dsnOf !== undefined && env.requireTls === true && client.secure && client.capabilities.requireTls),
        message: message.open(),
      });
      const remoteMta = ep.servername ?? ep.host;
      // RFC 3461 §6.2.2: a DSN-capable peer that took the recipient now owns its success notice.
      const results = sent.recipients.map((r) => ({ ...r, remoteMta, dsnPassedOn: r.outcome === "delivered" && client.capabilities.dsn }));
      return { value: { kind: "done", results } as EndpointAttempt, reusable: true };
    });
  } catch (err) {
    const detail = `${ep.host}:${ep.port}: ${errorText(err)}`;
    if (!started) {
      // Trouble before MAIL (connection, greeting, TLS, AUTH) says nothing about the recipients.
      const tlsFailure = err instanceof SmtpClientError && err.kind === "tls";
      return { kind: "unreachable", error: errorText(err), permanent: false, ...(tlsFailure ? { tlsFailure } : {}) };
    }
    ctx.logger.warn({ event: "smtp-error", id: env.id, peer: `${ep.host}:${ep.port}`, err: errorText(err) }, "delivery: SMTP transaction failed");
    // A break mid-transaction may or may not have delivered: retrying risks a duplicate, which
    // RFC 5321 §6.1 prefers to a loss.
    const permanent = err instanceof SmtpClientError && err.permanent;
    return { kind: "done", results: recipients.map((r) => ({ address: r.address, outcome: permanent ? "failed" : "deferred", detail })) };
  }
}
