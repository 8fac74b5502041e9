/**
 * DANE's check of the certificate chain an MX host presented (RFC 7672 §3, RFC 6698 §2.1):
 * DANE-EE(3) pins the leaf, DANE-TA(2) a certificate of the presented chain that the leaf must
 * chain to and, below it, the usual name and validity checks.
 */
import { createHash, type X509Certificate } from "node:crypto";
import { isUsableTlsa, tlsaName, tlsaText } from "./tlsa.js";
import type { DaneVerdict, TlsaRecord } from "./types.js";

/** What a record's data is compared with: the certificate or its SubjectPublicKeyInfo (RFC 6698 §2.1.2), digested (§2.1.3). */
function associatedData(cert: X509Certificate, selector: number, matchingType: number): Buffer {
  const selected = selector === 0 ? cert.raw : cert.publicKey.export({ type: "spki", format: "der" });
  if (matchingType === 1) return createHash("sha256").update(selected).digest();
  if (matchingType === 2) return createHash("sha512").update(selected).digest();
  return selected;
}

/** Whether `record` matches `cert` (selector and matching type only, usage aside). */
export function tlsaMatches(record: TlsaRecord, cert: X509Certificate): boolean {
  return associatedData(cert, record.selector, record.matchingType).equals(record.data);
}

const short = (r: TlsaRecord): string => {
  const text = tlsaText(r);
  return text.length > 30 ? `${text.slice(0, 30)}…` : text;
};

/**
 * The path from the leaf up to `anchor` through the presented chain, each certificate issued by
 * and signed by the next; undefined when the leaf does not chain to it.
 */
function pathTo(chain: X509Certificate[], anchor: X509Certificate): X509Certificate[] | undefined {
  const path = [chain[0]!];
  for (;;) {
    const current = path[path.length - 1]!;
    if (current === anchor) return path;
    const issuer = chain.find((c) => !path.includes(c) && current.checkIssued(c) && current.verify(c.publicKey));
    if (!issuer) return undefined;
    path.push(issuer);
  }
}

/**
 * Checks the chain a peer presented (leaf first, as sent) against an MX host's TLSA records.
 * `records` may hold unusable ones: they are skipped (RFC 7672 §3.1.3); none usable at all is
 * "tlsa-invalid". DANE-EE(3): the leaf matches, no name or expiry check (§3.1.1). DANE-TA(2): a
 * presented certificate matches, the leaf chains to it by signature, and the certificates below
 * it are within their validity and the leaf names `mxHost` (§3.1.2, §3.2.2). Failures carry
 * RFC 8460 result types for TLS-RPT.
 */
export function matchDane(records: TlsaRecord[], chain: X509Certificate[], mxHost: string, now = new Date(), port = 25): DaneVerdict {
  const name = tlsaName(mxHost, port);
  const usable = records.filter(isUsableTlsa);
  if (usable.length === 0) {
    return { ok: false, resultType: "tlsa-invalid", detail: `no usable TLSA record at ${name} (only usages 2 and 3 apply to SMTP, RFC 7672 §3.1.3)` };
  }
  const leaf = chain[0];
  if (!leaf) return { ok: false, resultType: "validation-failure", detail: `${mxHost} presented no certificate` };
  let taFailure: DaneVerdict | undefined;
  for (const record of usable) {
    if (record.usage === 3) {
      if (tlsaMatches(record, leaf)) return { ok: true, matched: tlsaText(record) };
      continue;
    }
    for (const anchor of chain) {
      if (!tlsaMatches(record, anchor)) continue;
      const path = pathTo(chain, anchor);
      if (!path) {
        taFailure ??= {
          ok: false,
          resultType: "validation-failure",
          detail: `the certificate of ${mxHost} does not chain to the one TLSA ${short(record)} names`,
        };
        continue;
      }
      const expired = path.slice(0, -1).find((c) => now < new Date(c.validFrom) || now > new Date(c.validTo));
      if (expired) {
        taFailure ??= {
          ok: false,
          resultType: "certificate-expired",
          detail: `${expired === leaf ? "the certificate" : `the intermediate ${expired.subject.replace(/\n/g, ", ")}`} of ${mxHost} is not valid now (${expired.validFrom} to ${expired.validTo})`,
        };
        continue;
      }
      if (leaf.checkHost(mxHost) === undefined) {
        taFailure ??= {
          ok: false,
          resultType: "certificate-host-mismatch",
          detail: `the certificate of ${mxHost} does not name it (${leaf.subjectAltName ?? leaf.subject})`,
        };
        continue;
      }
      return { ok: true, matched: tlsaText(record) };
    }
  }
  return (
    taFailure ?? {
      ok: false,
      resultType: "validation-failure",
      detail: `no TLSA record of ${name} matches the certificate presented (${usable.map(short).join(", ")})`,
    }
  );
}
