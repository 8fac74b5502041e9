/**
 * Server-side TLS, in one place: the certificate (configured, or a self-signed ECDSA P-256 pair
 * generated into the data directory on first start: ECDSA handshakes cost about half of
 * RSA-2048's), the protocol/cipher profile of each listener, renegotiation refused, and the one
 * function that builds every server TLSSocket (implicit TLS on 465, with or without a PROXY
 * header, and STARTTLS on 25/587). A new TLS listener must take its socket from here.
 */
import { execFile } from "node:child_process";
import { constants as cryptoConstants } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import type { Socket } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { createSecureContext, DEFAULT_CIPHERS, TLSSocket, type SecureContext, type SecureContextOptions } from "node:tls";
import type { ListenerMode } from "../base/listener-mode.js";

const run = promisify(execFile);

export interface CertificatePaths {
  cert: string;
  key: string;
  generated: boolean;
}

export async function ensureCertificate(configured: { cert?: string; key?: string }, dataDir: string, hostname: string): Promise<CertificatePaths> {
  if (configured.cert && configured.key) return { cert: configured.cert, key: configured.key, generated: false };
  const dir = join(dataDir, "tls");
  const cert = join(dir, "selfsigned-cert.pem");
  const key = join(dir, "selfsigned-key.pem");
  if (existsSync(cert) && existsSync(key)) return { cert, key, generated: false };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // execFile, no shell: the host name is an argument, never a command line (SECURITY.md rule 6).
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-subj",
    `/CN=${hostname}`,
    "-addext",
    `subjectAltName=DNS:${hostname}`,
    "-days",
    "825",
    "-keyout",
    key,
    "-out",
    cert,
  ]).catch((err: Error) => {
    throw new Error(`cannot generate a self-signed certificate with openssl (${err.message}); set tls.cert and tls.key`);
  });
  return { cert, key, generated: true };
}

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  minVersion: "TLSv1.2" | "TLSv1.3";
}

/** TLS 1.0 and 1.1 are never offered (RFC 8996). */
export function loadTlsMaterial(paths: { cert: string; key: string }, minVersion: "TLSv1.2" | "TLSv1.3"): TlsMaterial {
  return { cert: readFileSync(paths.cert), key: readFileSync(paths.key), minVersion };
}

/**
 * modern: TLS 1.3 only. intermediate: TLS 1.3, and TLS 1.2 with ECDHE key exchange and AEAD
 * ciphers only (Mozilla's "intermediate" guideline, without the DHE suites: no DH parameters are
 * configured). compatible: Node's default list, CBC-SHA suites and static RSA included, for old
 * MTAs on port 25, where opportunistic TLS with a weak suite still beats plain text (RFC 7435).
 * TLS 1.0 and 1.1 are refused by every profile (RFC 8996).
 */
export const TLS_PROFILES = ["modern", "intermediate", "compatible"] as const;
export type TlsProfile = (typeof TLS_PROFILES)[number];

const TLS13_SUITES = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];
const ECDHE_AEAD = [
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
];

/** Submission carries passwords: modern suites only. Port 25 takes what old senders have. */
export function defaultTlsProfile(mode: ListenerMode): TlsProfile {
  return mode === "mta" ? "compatible" : "intermediate";
}

/**
 * The options every server-side context gets. SSL_OP_NO_RENEGOTIATION: a TLS 1.2 client may not
 * renegotiate (each renegotiation costs the server a full handshake, CVE-2011-1473, and we need
 * none: no client certificates are asked for mid-session); OpenSSL answers with a
 * no_renegotiation alert. TLS 1.3 has no renegotiation at all.
 */
export function serverContextOptions(material: TlsMaterial, profile: TlsProfile): SecureContextOptions {
  const tls13Only = profile === "modern" || material.minVersion === "TLSv1.3";
  return {
    cert: material.cert,
    key: material.key,
    minVersion: tls13Only ? "TLSv1.3" : "TLSv1.2",
    // compatible: ECDHE+AEAD ahead of Node's default list (OpenSSL keeps a suite's first place).
    ciphers: profile === "compatible" ? [...ECDHE_AEAD, DEFAULT_CIPHERS].join(":") : [...TLS13_SUITES, ...ECDHE_AEAD].join(":"),
    // Our order: with CBC and static-RSA suites on the compatible list it keeps capable clients on
    // ECDHE+AEAD. PRIORITIZE_CHACHA: a client that lists ChaCha20 first (no AES hardware) keeps it.
    honorCipherOrder: true,
    secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION | cryptoConstants.SSL_OP_PRIORITIZE_CHACHA,
  };
}

/** One context per profile, shared by every listener with that profile (and their session tickets). */
export interface TlsContexts {
  forListener(listener: { mode: ListenerMode; tlsProfile?: TlsProfile }): SecureContext;
}

export function secureContextOf(material: TlsMaterial): TlsContexts {
  const made = new Map<TlsProfile, SecureContext>();
  // Built now, not on first use: a certificate that does not load fails the start or the reload.
  for (const p of TLS_PROFILES) made.set(p, createSecureContext(serverContextOptions(material, p)));
  return {
    forListener: (l) => made.get(l.tlsProfile ?? defaultTlsProfile(l.mode))!,
  };
}

/**
 * The server side of a TLS connection over an accepted socket. Everything protocol-level comes
 * from the context (serverContextOptions); this is the only place Postern builds one.
 */
export function serverTlsSocket(raw: Socket, secureContext: SecureContext | undefined): TLSSocket {
  if (!secureContext) throw new Error("TLS requested without a server context");
  return new TLSSocket(raw, { isServer: true, secureContext });
}
