/**
 * MTA-STS (RFC 8461): the policy file served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt
 * (§3.2), and the id of the _mta-sts TXT record (§3.1) that `postern dns` prints with it. The id
 * is taken from the policy text, so it changes exactly when the policy does (§3.1: senders fetch
 * the policy again only when the id changes).
 */
import { createHash } from "node:crypto";

export interface MtaStsSettings {
  mode: "testing" | "enforce" | "none";
  maxAgeSec: number;
}

/** §3.2: key/value lines, CRLF; one mx line per MX host. */
export function mtaStsPolicy(mxHosts: string[], s: MtaStsSettings): string {
  return ["version: STSv1", `mode: ${s.mode}`, ...mxHosts.map((mx) => `mx: ${mx}`), `max_age: ${s.maxAgeSec}`, ""].join("\r\n");
}

/** §3.1: 1 to 32 letters and digits. */
export function mtaStsPolicyId(policy: string): string {
  return createHash("sha256").update(policy).digest("hex").slice(0, 20);
}
