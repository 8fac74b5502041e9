/**
 * TLS material: the configured certificate, or a self-signed ECDSA P-256 pair generated into the
 * data directory on first start (ECDSA handshakes cost about half of RSA-2048's).
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { createSecureContext, type SecureContext } from "node:tls";

const run = promisify(execFile);

export interface CertificatePaths {
  cert: string;
  key: string;
  generated: boolean;
}

export async function ensureCertificate(
  configured: { cert?: string; key?: string },
  dataDir: string,
  hostname: string,
): Promise<CertificatePaths> {
  if (configured.cert && configured.key) return { cert: configured.cert, key: configured.key, generated: false };
  const dir = join(dataDir, "tls");
  const cert = join(dir, "selfsigned-cert.pem");
  const key = join(dir, "selfsigned-key.pem");
  if (existsSync(cert) && existsSync(key)) return { cert, key, generated: false };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // execFile, no shell: the host name is an argument, never a command line (SECURITY.md rule 6).
  await run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-subj", `/CN=${hostname}`, "-addext", `subjectAltName=DNS:${hostname}`,
    "-days", "825", "-keyout", key, "-out", cert,
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

export function secureContextOf(material: TlsMaterial): SecureContext {
  return createSecureContext(material);
}
