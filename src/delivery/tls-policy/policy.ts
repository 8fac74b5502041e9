/**
 * What TLS one delivery to one MX host must have, from the parts: DANE (RFC 7672) first, it takes
 * precedence over MTA-STS (RFC 8461 §2); else the domain's MTA-STS policy; else opportunistic
 * STARTTLS (RFC 7435). REQUIRETLS (RFC 8689) and "TLS-Required: No" adjust it per message.
 * remote.ts asks planHost() per MX host, checks the peer with a HostCheck after the handshake,
 * and records each session attempt for TLS-RPT (RFC 8460).
 */
import { X509Certificate } from "node:crypto";
import { checkServerIdentity, type PeerCertificate, type TLSSocket } from "node:tls";
import type { Envelope } from "../../queue/types.js";
import { isCertificateError, SmtpClientError } from "../smtp-connection.js";
import type {
  DaneVerdict,
  MtaStsResult,
  MtaStsSource,
  TlsaRecord,
  TlsaSource,
  TlsPolicyName,
  TlsReportRecorder,
  TlsRptPolicy,
  TlsRptResultType,
  TlsSessionOutcome,
} from "./types.js";

export interface TlsPolicyDeps {
  mtaSts?: MtaStsSource;
  /** Only when `dns.dnssec` is "trust-ad": DANE needs authenticated answers (RFC 7672 §2.1). */
  tlsa?: TlsaSource;
  /** dane.ts's check of a presented chain (`port`: the TLSA name's, for diagnostics); DANE is unused without it. */
  matchDane?: (usable: TlsaRecord[], chain: X509Certificate[], mxHost: string, port: number) => DaneVerdict;
  recorder?: TlsReportRecorder;
  /** MTA-STS mx pattern match (mta-sts.ts mxMatches); a local RFC 8461 §4.1 match when absent. */
  mxMatches?: (host: string, patterns: string[]) => boolean;
}

/** What the message asks of TLS (RFC 8689). */
export interface TlsDemands {
  /** MAIL FROM had REQUIRETLS: verified TLS to a peer offering REQUIRETLS, else bounce. */
  requireTls: boolean;
  /** "TLS-Required: No": policy failures do not block delivery (RFC 8689 §5); ignored with REQUIRETLS. */
  tlsRequiredNo: boolean;
}

export function demandsOf(env: Pick<Envelope, "requireTls" | "tlsRequiredNo" | "dsnOf">): TlsDemands {
  // RFC 8689 §5: our report about a REQUIRETLS message (header section only, from <>) carries the
  // tag, but it "SHOULD NOT cause a bounce message to be discarded": no demand is made of the
  // return path, and the parameter goes only to a hop that offers it (deliverToEndpoint).
  const requireTls = env.requireTls === true && env.dsnOf === undefined;
  return { requireTls, tlsRequiredNo: !requireTls && env.tlsRequiredNo === true };
}

/** How one MX host is to be reached. */
export type HostPlan =
  /** Do not use this host (MX not in the MTA-STS policy, TLSA lookup failed, REQUIRETLS unverifiable). */
  | { kind: "skip"; policy: TlsPolicyName; detail: string; requireTlsRefusal: boolean; rpt?: TlsRptPolicy }
  | {
      kind: "connect";
      policy: TlsPolicyName;
      /** STARTTLS required, or opportunistic. */
      starttlsRequired: boolean;
      /** A failed check ends the session (enforce, DANE) or is only reported (testing, TLS-Required: No). */
      enforce: boolean;
      check: "dane" | "webpki" | "none";
      usable: TlsaRecord[];
      /** The port of the TLSA name (`_PORT._tcp.HOST`) the DANE records came from. */
      port: number;
      /** "DANE", "MTA-STS enforce", … for diagnostics. */
      label: string;
      rpt?: TlsRptPolicy;
    };

/** RFC 8461 §4.1: "*.example.net" matches exactly one more label; names compare case-insensitively. */
export function mxPatternMatches(host: string, patterns: string[]): boolean {
  const h = host.toLowerCase().replace(/\.$/, "");
  return patterns.some((p) => {
    const pat = p.toLowerCase().replace(/\.$/, "");
    if (pat.startsWith("*.")) {
      const dot = h.indexOf(".");
      return dot > 0 && h.slice(dot + 1) === pat.slice(2);
    }
    return h === pat;
  });
}

function tlsaText(r: TlsaRecord): string {
  return `${r.usage} ${r.selector} ${r.matchingType} ${r.data.toString("hex")}`;
}

function stsRpt(domain: string, sts: MtaStsResult): TlsRptPolicy {
  if (sts.kind === "policy") {
    return { type: "sts", domain, strings: sts.policy.text.split(/\r?\n/).filter((l) => l.trim() !== ""), mxHosts: sts.policy.mx };
  }
  return { type: "sts", domain, strings: [] };
}

export class OutboundTlsPolicy {
  private readonly matchMx: (host: string, patterns: string[]) => boolean;

  constructor(readonly deps: TlsPolicyDeps) {
    this.matchMx = deps.mxMatches ?? mxPatternMatches;
  }

  /** The domain's MTA-STS state; a source that throws counts as no policy (RFC 8461 §5: deliver as without). */
  async forDomain(domain: string): Promise<MtaStsResult> {
    if (!this.deps.mtaSts) return { kind: "none" };
    try {
      return await this.deps.mtaSts.policyFor(domain);
    } catch (err) {
      return { kind: "fetch-failed", resultType: "sts-policy-fetch-error", detail: err instanceof Error ? err.message : String(err) };
    }
  }

  /** RFC 8461 §4.1 enforce: the MX hosts the policy allows; none → the reason to defer. */
  mxMismatch(domain: string, sts: MtaStsResult, hosts: string[], demands: TlsDemands): string | undefined {
    if (!this.stsEnforced(sts, demands)) return undefined;
    const patterns = (sts as Extract<MtaStsResult, { kind: "policy" }>).policy.mx;
    if (hosts.some((h) => this.matchMx(h, patterns))) return undefined;
    return `451 4.7.5 MTA-STS enforce: no MX host of ${domain} matches the policy (policy mx: ${patterns.join(", ") || "none"}; MX hosts: ${hosts.join(", ")})`;
  }

  /** Enforce, or testing for a REQUIRETLS message (it needs a verified MX host and certificate, RFC 8689 §4.2.1). */
  private stsEnforced(sts: MtaStsResult, demands: TlsDemands): boolean {
    if (sts.kind !== "policy" || demands.tlsRequiredNo) return false;
    return sts.policy.mode === "enforce" || (sts.policy.mode === "testing" && demands.requireTls);
  }

  /**
   * RFC 7672 §2.2.1: TLSA records of the MX host names count only when the MX RRset itself is
   * DNSSEC-authenticated (an attacker could otherwise name hosts of its own, with TLSA of its own).
   * "insecure" when DANE is off; "failed" when the AD status could not be learnt.
   */
  async mxStatus(domain: string): Promise<{ kind: "secure" | "insecure" } | { kind: "failed"; detail: string }> {
    if (!this.deps.tlsa || !this.deps.matchDane) return { kind: "insecure" };
    try {
      return (await this.deps.tlsa.mxAuthenticated(domain)) ? { kind: "secure" } : { kind: "insecure" };
    } catch (err) {
      return {
        kind: "failed",
        detail: `451 4.4.3 DANE: DNSSEC status of the MX records of ${domain} unknown (${err instanceof Error ? err.message : String(err)})`,
      };
    }
  }

  /** `mxSecure`: the MX RRset was authenticated (mxStatus), so the hosts' TLSA records may be used. */
  async planHost(domain: string, sts: MtaStsResult, host: string, port: number, demands: TlsDemands, mxSecure: boolean): Promise<HostPlan> {
    // RFC 7672 §2.2: DANE first; only authenticated, usable records at authenticated MX names count.
    if (mxSecure && this.deps.tlsa && this.deps.matchDane) {
      const tlsa = await this.deps.tlsa.lookup(host, port).catch((err: unknown) => ({
        kind: "temporary-failure" as const,
        detail: err instanceof Error ? err.message : String(err),
      }));
      if (tlsa.kind === "temporary-failure" && !demands.tlsRequiredNo) {
        // RFC 7672 §2.2: a host whose TLSA lookup failed is not used (an attacker could cause it).
        return {
          kind: "skip",
          policy: "dane",
          detail: `451 4.7.5 DANE: TLSA lookup for _${port}._tcp.${host} failed (${tlsa.detail})`,
          requireTlsRefusal: false,
          rpt: { type: "tlsa", domain, strings: [] },
        };
      }
      if (tlsa.kind === "records" && tlsa.usable.length > 0) {
        return {
          kind: "connect",
          policy: "dane",
          starttlsRequired: !demands.tlsRequiredNo,
          enforce: !demands.tlsRequiredNo,
          check: "dane",
          usable: tlsa.usable,
          port,
          label: "DANE",
          rpt: { type: "tlsa", domain, strings: tlsa.records.map(tlsaText) },
        };
      }
      // Authenticated TLSA records, none usable (RFC 7672 §3.1.3): they still say the host does TLS,
      // so TLS is mandatory though it cannot be authenticated (RFC 7672 §2.2; Postfix does the same).
      // An MTA-STS policy, which can authenticate, or REQUIRETLS's refusal below take precedence.
      const stsApplies = sts.kind === "policy" && sts.policy.mode !== "none";
      if (tlsa.kind === "records" && !stsApplies && !demands.requireTls && !demands.tlsRequiredNo) {
        return {
          kind: "connect",
          policy: "dane",
          starttlsRequired: true,
          enforce: true,
          check: "none",
          usable: [],
          port,
          label: "DANE (no usable TLSA record: TLS required, not authenticated)",
          rpt: { type: "tlsa", domain, strings: tlsa.records.map(tlsaText) },
        };
      }
    }
    if (sts.kind === "policy" && sts.policy.mode !== "none") {
      const enforced = this.stsEnforced(sts, demands);
      const policy: TlsPolicyName = sts.policy.mode === "enforce" ? "mta-sts-enforce" : "mta-sts-testing";
      const label = sts.policy.mode === "enforce" ? "MTA-STS enforce" : "MTA-STS testing";
      if (enforced && !this.matchMx(host, sts.policy.mx)) {
        return {
          kind: "skip",
          policy,
          detail: `451 4.7.5 ${label}: MX host ${host} is not in the policy of ${domain} (mx: ${sts.policy.mx.join(", ")})`,
          requireTlsRefusal: false,
        };
      }
      return {
        kind: "connect",
        policy,
        starttlsRequired: enforced,
        enforce: enforced,
        check: "webpki",
        usable: [],
        port,
        label,
        rpt: stsRpt(domain, sts),
      };
    }
    if (demands.requireTls) {
      // RFC 8689 §4.2.1: without DANE or MTA-STS the MX host and its certificate cannot be verified.
      return {
        kind: "skip",
        policy: "opportunistic",
        detail: `550 5.7.30 REQUIRETLS support required: ${host} has neither DANE nor an MTA-STS policy to verify its TLS`,
        requireTlsRefusal: true,
      };
    }
    const rpt: TlsRptPolicy = sts.kind === "fetch-failed" ? stsRpt(domain, sts) : { type: "no-policy-found", domain, strings: [] };
    return { kind: "connect", policy: "opportunistic", starttlsRequired: false, enforce: false, check: "none", usable: [], port, label: "opportunistic", rpt };
  }

  /** The TLS-RPT store opens after routing is built (server.ts). */
  setRecorder(recorder: TlsReportRecorder): void {
    this.deps.recorder = recorder;
  }

  record(outcome: TlsSessionOutcome): void {
    try {
      this.deps.recorder?.record(outcome);
    } catch {
      // reporting must never stop delivery
    }
  }
}

/** The chain as the peer sent it, leaf first. */
export function peerChain(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  let cert: PeerCertificate | undefined = socket.getPeerCertificate(true) as PeerCertificate & { issuerCertificate?: PeerCertificate };
  const seen = new Set<string>();
  while (cert?.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(new X509Certificate(cert.raw));
    cert = (cert as PeerCertificate & { issuerCertificate?: PeerCertificate }).issuerCertificate;
  }
  return chain;
}

/** RFC 8460 §4.3 result type of a certificate verification code. */
export function certificateResultType(code: string | undefined): TlsRptResultType {
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") return "certificate-expired";
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID" || code === "HOSTNAME_MISMATCH") return "certificate-host-mismatch";
  if (code && isCertificateError({ code })) return "certificate-not-trusted";
  return "validation-failure";
}

/** RFC 8460 §4.3 result type of a failed session attempt; undefined when it was no TLS failure. */
export function resultTypeOf(err: unknown): TlsRptResultType | undefined {
  if (!(err instanceof SmtpClientError) || err.kind !== "tls") return undefined;
  const code = (err.cause as { code?: string } | undefined)?.code;
  if (code === "STARTTLS_NOT_OFFERED") return "starttls-not-supported";
  return certificateResultType(code);
}

/**
 * The check of one session's peer after the handshake (TlsParams.verifyPeer). Remembers the
 * failure for TLS-RPT and the diagnostic; refuses the session only when the plan enforces.
 */
export class HostCheck {
  failure: { resultType: TlsRptResultType; detail: string } | undefined;

  constructor(
    private readonly plan: Extract<HostPlan, { kind: "connect" }>,
    private readonly mxHost: string,
    private readonly deps: TlsPolicyDeps,
  ) {}

  readonly verifyPeer = (socket: TLSSocket): string | null => {
    this.failure = this.check(socket);
    if (!this.failure || !this.plan.enforce) return null;
    return `451 4.7.5 ${this.plan.label}: ${this.failure.detail}`;
  };

  private check(socket: TLSSocket): { resultType: TlsRptResultType; detail: string } | undefined {
    if (this.plan.check === "none") return undefined;
    if (this.plan.check === "dane") {
      const verdict = this.deps.matchDane!(this.plan.usable, peerChain(socket), this.mxHost, this.plan.port);
      return verdict.ok ? undefined : { resultType: verdict.resultType, detail: `${verdict.detail} (${this.mxHost})` };
    }
    // RFC 8461 §4.2: a chain to a trusted root (the session's CA: outbound.caFile, else the system's)
    // and a name that matches the MX host (the session's servername).
    // Node marks a name mismatch as unauthorized too; the chain's own error comes first.
    const nameError = checkServerIdentity(this.mxHost, socket.getPeerCertificate());
    if (!socket.authorized) {
      const err = socket.authorizationError as (Error & { code?: string }) | string | null;
      const code = typeof err === "string" ? err : (err?.code ?? err?.message);
      const resultType = certificateResultType(code);
      if (resultType === "certificate-expired") return { resultType, detail: `certificate of ${this.mxHost} has expired or is not yet valid (${code})` };
      if (resultType !== "certificate-host-mismatch" || !nameError) {
        return { resultType, detail: `certificate of ${this.mxHost} is not trusted (${code ?? "unknown"})` };
      }
    }
    if (nameError) return { resultType: "certificate-host-mismatch", detail: `certificate of ${this.mxHost} does not match the name (${nameError.message})` };
    return undefined;
  }
}

/** The per-recipient diagnostic of a session under a policy that failed before MAIL. */
export function sessionFailureDetail(plan: Extract<HostPlan, { kind: "connect" }>, mxHost: string, err: unknown, check: HostCheck): string {
  const text = err instanceof Error ? err.message : String(err);
  if (plan.enforce && check.failure) return text; // verifyPeer's refusal, already worded
  if (plan.enforce && resultTypeOf(err) === "starttls-not-supported") return `451 4.7.5 STARTTLS not offered by ${mxHost} under ${plan.label}`;
  if (plan.enforce && resultTypeOf(err) !== undefined) return `451 4.7.5 ${plan.label}: TLS with ${mxHost} failed (${text})`;
  return text;
}
