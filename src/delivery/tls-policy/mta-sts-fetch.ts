/**
 * The HTTPS fetch of an MTA-STS policy (RFC 8461 §3.3): `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`,
 * the certificate verified for that name against the configured or system CAs, no redirects, 200
 * only, text/plain only, the body size-limited, and the whole fetch time-limited. The host's
 * address comes from the same DNS resolver as the TXT lookup (dns.servers), not the system's.
 */
import type { promises as dns } from "node:dns";
import { request } from "node:https";
import { X509Certificate } from "node:crypto";
import { isIP, type LookupFunction } from "node:net";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { type ParsedMtaStsPolicy, parseMtaStsPolicy } from "./mta-sts-parse.js";
import { isCertificateError } from "../smtp-connection.js";

/** Others limit the policy body to 64 KiB; a real policy is a few hundred bytes. */
export const MTA_STS_MAX_BODY = 64 * 1024;

export interface MtaStsFetchOptions {
  /** Resolves mta-sts.DOMAIN (A and AAAA). */
  resolver: dns.Resolver;
  /** 443; other ports only for test rigs. */
  port?: number;
  /** PEM CA bundle; absent: the system's roots. */
  ca?: string | Buffer;
  /** The whole fetch: connect, handshake, response, body. */
  timeoutMs?: number;
}

export type MtaStsFetchResult =
  | { ok: true; status: number; text: string; policy: ParsedMtaStsPolicy }
  | {
      ok: false;
      /** RFC 8460 §4.3: network/HTTP failure, a policy that does not validate, or a certificate that does not. */
      resultType: "sts-policy-fetch-error" | "sts-policy-invalid" | "sts-webpki-invalid";
      detail: string;
      /** The HTTP status, when a response came. */
      status?: number;
    };

/** net's lookup, answered by our resolver (Node ≥ 20 asks with all: true for happy eyeballs). */
function lookupWith(resolver: dns.Resolver): LookupFunction {
  return (hostname, options, callback) => {
    Promise.allSettled([resolver.resolve4(hostname), resolver.resolve6(hostname)]).then(([v4, v6]) => {
      const addresses = [...(v4.status === "fulfilled" ? v4.value : []), ...(v6.status === "fulfilled" ? v6.value : [])];
      if (addresses.length === 0) {
        const reason = v4.status === "rejected" ? (v4.reason as NodeJS.ErrnoException) : undefined;
        const err: NodeJS.ErrnoException = new Error(`no address for ${hostname}${reason?.code ? ` (${reason.code})` : ""}`);
        err.code = reason?.code ?? "ENOTFOUND";
        callback(err, "", 4);
      } else if ((options as { all?: boolean }).all) {
        (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(
          null,
          addresses.map((address) => ({ address, family: isIP(address) })),
        );
      } else callback(null, addresses[0]!, isIP(addresses[0]!));
    });
  };
}

/**
 * §3.3 defers to RFC 6125: the name must be a DNS-ID (subjectAltName), a wildcard only as the whole
 * leftmost label; Node's own check also accepts the CN when there is no SAN, so check again.
 */
function policyHostIdentity(hostname: string, cert: PeerCertificate): Error | undefined {
  const err = checkServerIdentity(hostname, cert);
  if (err) return err;
  const ok = new X509Certificate(cert.raw).checkHost(hostname, { subject: "never", wildcards: true, partialWildcards: false, multiLabelWildcards: false });
  if (ok) return undefined;
  return Object.assign(new Error(`certificate has no subjectAltName DNS entry for ${hostname}`), { code: "ERR_TLS_CERT_ALTNAME_INVALID" });
}

/** The policy host of a domain (§3.3). */
export const mtaStsHost = (domain: string): string => `mta-sts.${domain}`;

/**
 * Fetches and parses the policy of `domain` (already normalised). Never throws: every failure is
 * an RFC 8460 result type with a short detail for logs, `postern check` and TLS-RPT.
 */
export function fetchMtaStsPolicy(domain: string, o: MtaStsFetchOptions): Promise<MtaStsFetchResult> {
  const host = mtaStsHost(domain);
  const url = `https://${host}${o.port !== undefined && o.port !== 443 ? `:${o.port}` : ""}/.well-known/mta-sts.txt`;
  return new Promise<MtaStsFetchResult>((resolve) => {
    let done = false;
    const finish = (r: MtaStsFetchResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    const req = request(
      {
        host,
        servername: host, // SNI and the name the certificate must carry (§3.3, RFC 6125)
        port: o.port ?? 443,
        path: "/.well-known/mta-sts.txt",
        method: "GET",
        lookup: lookupWith(o.resolver),
        agent: false,
        rejectUnauthorized: true,
        checkServerIdentity: policyHostIdentity,
        ...(o.ca !== undefined ? { ca: o.ca } : {}),
        headers: { accept: "text/plain", "user-agent": "postern-mta-sts" },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        // §3.3: 200 only; senders MUST NOT follow redirects.
        if (status !== 200) {
          const where = res.headers.location ? ` to ${res.headers.location}` : "";
          return finish({
            ok: false,
            resultType: "sts-policy-fetch-error",
            status,
            detail: `${url}: HTTP ${status}${status >= 300 && status < 400 ? ` redirect${where} (not followed, RFC 8461 §3.3)` : ""}`,
          });
        }
        // §3.3: the media type is text/plain (parameters such as charset allowed).
        const type = (res.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
        if (type !== "text/plain")
          return finish({ ok: false, resultType: "sts-policy-invalid", status, detail: `${url}: media type ${JSON.stringify(type)}, not text/plain` });
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > MTA_STS_MAX_BODY)
            return finish({ ok: false, resultType: "sts-policy-invalid", status, detail: `${url}: body larger than ${MTA_STS_MAX_BODY} bytes` });
          chunks.push(chunk);
        });
        res.on("error", (err) => finish({ ok: false, resultType: "sts-policy-fetch-error", status, detail: `${url}: ${err.message}` }));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const parsed = parseMtaStsPolicy(text);
          finish(
            parsed.ok
              ? { ok: true, status, text, policy: parsed.policy }
              : { ok: false, resultType: "sts-policy-invalid", status, detail: `${url}: ${parsed.reason}` },
          );
        });
      },
    );
    req.on("error", (err: NodeJS.ErrnoException) => {
      const webpki = isCertificateError(err);
      finish({
        ok: false,
        resultType: webpki ? "sts-webpki-invalid" : "sts-policy-fetch-error",
        detail: `${url}: ${webpki ? "certificate not valid: " : ""}${err.code ? `${err.code} ` : ""}${err.message}`.slice(0, 300),
      });
    });
    const timer = setTimeout(
      () => finish({ ok: false, resultType: "sts-policy-fetch-error", detail: `${url}: no policy within ${o.timeoutMs ?? 10_000} ms` }),
      o.timeoutMs ?? 10_000,
    );
    req.end();
  });
}
