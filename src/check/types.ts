/** What `postern check` reports: one verdict per item, with the reason and the fix. */
import type { ListenerMode } from "../base/listener-mode.js";

export type Verdict = "PASS" | "WARN" | "FAIL" | "INFO" | "NOT TESTED";

export interface CheckItem {
  /** Stable identifier for scripts, e.g. "auth-before-tls". */
  id: string;
  verdict: Verdict;
  /** One line: what was seen. */
  reason: string;
  /** How to fix it: Postern's config words, and the usual Postfix/Sendmail setting. */
  fix?: string;
}

export interface CheckTarget {
  host: string;
  port: number;
  mode: ListenerMode;
  /** A domain the server receives mail for (relay and VRFY probes). */
  domain?: string;
  relayTo: string;
  ehlo: string;
  /** The name the certificate must match. */
  servername: string;
  ca?: Buffer;
  submissionsPort?: number;
  login?: { username: string; password: string };
  timeoutMs: number;
}

export const item = (id: string, verdict: Verdict, reason: string, fix?: string): CheckItem =>
  fix === undefined ? { id, verdict, reason } : { id, verdict, reason, fix };
