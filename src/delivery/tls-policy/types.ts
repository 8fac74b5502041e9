/**
 * Outbound TLS policy (issue 15): the shapes the parts share. MTA-STS (RFC 8461, mta-sts.ts),
 * DANE (RFC 7672, dane.ts + tlsa.ts), TLS-RPT (RFC 8460, tls-report.ts), REQUIRETLS (RFC 8689)
 * and the delivery path that applies them (policy.ts, remote.ts).
 */

/** What decided how TLS to one MX host had to look; shown in `postern queue show` and logs. */
export type TlsPolicyName = "none" | "opportunistic" | "mta-sts-enforce" | "mta-sts-testing" | "dane";

// ---- MTA-STS (RFC 8461) -------------------------------------------------------------------------

export interface MtaStsPolicy {
  /** RFC 8461 §3.2 "mode". */
  mode: "enforce" | "testing" | "none";
  /** "mx" patterns, lower-case; "*.example.net" matches exactly one more label (§4.1). */
  mx: string[];
  /** Seconds (§3.2 max_age, at most 31557600). */
  maxAge: number;
  /** The `id=` of the `_mta-sts` TXT record the policy was fetched under (§3.1). */
  id: string;
  /** When it was fetched (ms since the epoch); expires at fetchedAt + maxAge * 1000. */
  fetchedAt: number;
  /** The policy text as served (TLS-RPT reports it line by line, RFC 8460 §4.3 policy-string). */
  text: string;
}

/** The policy that applies to a domain now. */
export type MtaStsResult =
  /** No `_mta-sts` TXT record and no unexpired cached policy: MTA-STS does not apply. */
  | { kind: "none" }
  | { kind: "policy"; policy: MtaStsPolicy; fromCache: boolean }
  /**
   * A TXT record exists but the policy could not be fetched and nothing is cached: RFC 8461 §5
   * says deliver as without a policy; TLS-RPT reports it (sts-policy-fetch-error / sts-policy-invalid).
   */
  | { kind: "fetch-failed"; resultType: "sts-policy-fetch-error" | "sts-policy-invalid" | "sts-webpki-invalid"; detail: string };

// ---- DANE (RFC 7672, RFC 6698) ------------------------------------------------------------------

/** One TLSA record (RFC 6698 §2.1). */
export interface TlsaRecord {
  /** 2 = DANE-TA, 3 = DANE-EE (0 and 1 are unusable for SMTP, RFC 7672 §3.1.3). */
  usage: number;
  /** 0 = full certificate, 1 = SubjectPublicKeyInfo. */
  selector: number;
  /** 0 = exact, 1 = SHA-256, 2 = SHA-512. */
  matchingType: number;
  data: Buffer;
}

/** TLSA for `_25._tcp.HOST` (RFC 7672 §2.2). */
export type TlsaResult =
  /** No records, or the answer was not DNSSEC-authenticated (no AD bit from a trusted resolver). */
  | { kind: "none"; authenticated: boolean }
  /** Authenticated records; `usable` holds the ones usage 2/3, selector 0/1, matching 0/1/2. */
  | { kind: "records"; records: TlsaRecord[]; usable: TlsaRecord[] }
  /** The lookup failed (SERVFAIL, timeout) where the zone is signed: RFC 7672 §2.2 says do not use the host. */
  | { kind: "temporary-failure"; detail: string };

// ---- TLS-RPT (RFC 8460) -------------------------------------------------------------------------

/** RFC 8460 §4.3 result-type values. */
export type TlsRptResultType =
  | "starttls-not-supported"
  | "certificate-host-mismatch"
  | "certificate-expired"
  | "certificate-not-trusted"
  | "validation-failure"
  | "tlsa-invalid"
  | "dnssec-invalid"
  | "dane-required"
  | "sts-policy-fetch-error"
  | "sts-policy-invalid"
  | "sts-webpki-invalid";

/** The policy block of a report (RFC 8460 §4.4 "policy"). */
export interface TlsRptPolicy {
  type: "sts" | "tlsa" | "no-policy-found";
  /** MTA-STS: the policy's lines; DANE: the TLSA records as presentation text. */
  strings: string[];
  /** The policy domain (the recipient domain). */
  domain: string;
  /** MTA-STS: the policy's mx patterns. */
  mxHosts?: string[];
}

/** What went wrong in one session: a report's failure-details entry (RFC 8460 §4.4), less its count. */
export interface TlsFailureDetail {
  resultType: TlsRptResultType;
  sendingMtaIp?: string;
  receivingMxHostname?: string;
  receivingIp?: string;
  /** Short, no secrets: shown to the domain's owner. */
  additionalInformation?: string;
  failureReasonCode?: string;
}

/** One TLS session attempt's outcome, as the delivery path hands it to the recorder. */
export interface TlsSessionOutcome {
  policy: TlsRptPolicy;
  /** Absent: the session was set up with TLS as the policy wanted. */
  failure?: TlsFailureDetail;
}

/** What delivery needs of the TLS-RPT side; a no-op when reporting is off. */
export interface TlsReportRecorder {
  record(outcome: TlsSessionOutcome): void;
}

// ---- What the delivery path asks of the parts (policy.ts wires them) ----------------------------

/** MTA-STS (mta-sts.ts): the policy for a recipient domain, from cache or fetched (RFC 8461 §5). */
export interface MtaStsSource {
  policyFor(domain: string): Promise<MtaStsResult>;
}

/** DANE lookups (tlsa.ts); only consulted when `dns.dnssec` is "trust-ad". */
export interface TlsaSource {
  /** TLSA of `_PORT._tcp.HOST` (RFC 7672 §2.2.3: port 25 for MX delivery, whatever port the test rig uses). */
  lookup(host: string, port: number): Promise<TlsaResult>;
  /**
   * Whether the MX RRset of `domain` (or its secure denial) came with the AD bit (RFC 7672 §2.2.1).
   * Throws when no resolver answered.
   */
  mxAuthenticated(domain: string): Promise<boolean>;
}

/** DANE's check of a presented chain (dane.ts): the leaf first, as the peer sent it. */
export type DaneVerdict = { ok: true; matched: string } | { ok: false; resultType: TlsRptResultType; detail: string };
