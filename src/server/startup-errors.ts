/**
 * Errors that stop `postern serve` from starting, written for the admin who reads them (issue 12):
 * what went wrong in words, the setting and the file it comes from, and how to fix it. No errno
 * names or OpenSSL codes as the whole story.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { LISTENER_MODES } from "../base/listener-mode.js";

/** Where the running configuration came from. */
export interface ConfigSource {
  /** The YAML file given with --config. */
  file?: string;
  /** The embedded demo configuration (no --config). */
  demo?: boolean;
}

export function describeSource(source: ConfigSource): string {
  if (source.demo) return "the embedded demo configuration (no --config given)";
  return source.file ?? "the configuration";
}

/** A problem with one setting: what, which key in which file, and the fix. */
export class StartupError extends Error {
  constructor(
    readonly problem: string,
    readonly key: string,
    readonly fix: string,
    readonly source: ConfigSource = {},
  ) {
    super(`cannot start: ${problem}\n  setting: ${key} in ${describeSource(source)}\n  fix: ${fix}`);
    this.name = "StartupError";
  }

  /** One line, for a log entry (a failed reload). */
  get brief(): string {
    return `${this.problem} (${this.key} in ${describeSource(this.source)}); fix: ${this.fix}`;
  }
}

/** The demo's ports are moved as a block: --demo-ports BASE gives BASE, BASE+1, BASE+2. */
export const DEMO_PORT_ORDER = LISTENER_MODES;

export interface ListenTarget {
  /** The setting, e.g. "listeners[1].port" or "admin.port". */
  key: string;
  /** What listens, e.g. "listener listeners[1] (submission)". */
  what: string;
  address: string;
  port: number;
  /** A unix socket's path instead of address and port. */
  path?: string;
}

/** A listen() failure, explained. */
export function listenError(err: unknown, t: ListenTarget, source: ConfigSource, opts: { privilegesDropped?: boolean } = {}): StartupError {
  const code = (err as NodeJS.ErrnoException)?.code;
  const where = t.path ?? `${t.address.includes(":") ? `[${t.address}]` : t.address}:${t.port}`;
  if (code === "EADDRINUSE") {
    const fix = t.path
      ? `another process serves that socket: stop it, or set another path in ${t.key}`
      : source.demo
        ? `stop the program that holds it, or move the demo's ports: postern serve --demo-ports 3525 (then ${DEMO_PORT_ORDER.map((m, i) => `${m} ${3525 + i}`).join(", ")})`
        : `stop the program that holds ${where} (\`ss -ltnp 'sport = :${t.port}'\` names it), or set another port in ${t.key}`;
    return new StartupError(
      `${t.what} cannot listen on ${where}: the address is already in use (another program, or another postern, listens there)`,
      t.key,
      fix,
      source,
    );
  }
  if (code === "EACCES" && t.port > 0 && t.port < 1024) {
    const fix = opts.privilegesDropped
      ? `this listener is opened after postern has dropped root for process.user, so it needs a port from 1024 up in ${t.key}`
      : "start postern as root with process.user set (it binds the ports, then runs as that user for good), " +
        "or give it CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE, see contrib/postern.service), " +
        `or use a port from 1024 up in ${t.key}`;
    return new StartupError(`${t.what} cannot listen on ${where}: permission denied; ports below 1024 are privileged`, t.key, fix, source);
  }
  if (code === "EACCES") {
    return new StartupError(
      `${t.what} cannot listen on ${where}: permission denied`,
      t.key,
      `check what forbids it (a security module, a firewall rule on bind), or choose another address or port in ${t.key}`,
      source,
    );
  }
  if (code === "EADDRNOTAVAIL") {
    const addressKey = t.key.replace(/\.port$/, ".address");
    return new StartupError(
      `${t.what} cannot listen on ${where}: ${t.address} is not an address of this machine`,
      addressKey,
      `use an address this machine has (\`ip -brief address\` lists them), or 0.0.0.0 for all of them, in ${addressKey}`,
      source,
    );
  }
  const message = err instanceof Error ? err.message : String(err);
  return new StartupError(`${t.what} cannot listen on ${where}: ${message}`, t.key, `check ${t.key}`, source);
}

/**
 * Reads and checks the configured certificate and key before OpenSSL sees them, so a wrong file
 * is reported as what it is (missing, swapped, encrypted, not a pair) instead of as
 * "error:05800074:x509 certificate routines::key values mismatch".
 */
export function checkTlsPair(paths: { cert: string; key: string }, source: ConfigSource): void {
  const certText = readTlsFile(paths.cert, "tls.cert", source);
  const keyText = readTlsFile(paths.key, "tls.key", source);
  const hasCert = (t: string) => /-----BEGIN (TRUSTED )?CERTIFICATE-----/.test(t);
  const hasKey = (t: string) => /-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----/.test(t);
  const swapFix = "exchange the two paths: tls.cert is the certificate (chain), tls.key the private key";
  if (!hasCert(certText) && hasKey(certText) && hasCert(keyText) && !hasKey(keyText)) {
    throw new StartupError(
      `the certificate and key files are swapped: tls.cert (${paths.cert}) holds a private key and tls.key (${paths.key}) holds a certificate`,
      "tls.cert, tls.key",
      swapFix,
      source,
    );
  }
  if (!hasCert(certText)) {
    const what = hasKey(certText) ? "holds a private key, not a certificate" : "holds no PEM certificate (-----BEGIN CERTIFICATE-----)";
    throw new StartupError(
      `tls.cert (${paths.cert}) ${what}`,
      "tls.cert",
      hasKey(certText) ? swapFix : "point tls.cert at the PEM certificate (with its chain), e.g. fullchain.pem",
      source,
    );
  }
  if (!hasKey(keyText)) {
    const what = hasCert(keyText) ? "holds a certificate, not a private key" : "holds no PEM private key (-----BEGIN PRIVATE KEY-----)";
    throw new StartupError(
      `tls.key (${paths.key}) ${what}`,
      "tls.key",
      hasCert(keyText) ? "point tls.key at the certificate's private key, e.g. privkey.pem" : "point tls.key at the PEM private key, e.g. privkey.pem",
      source,
    );
  }
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(keyText)) {
    throw new StartupError(
      `tls.key (${paths.key}) is encrypted with a passphrase, which postern cannot ask for`,
      "tls.key",
      `decrypt it once: openssl pkey -in ${paths.key} -out key.pem (keep it mode 0600), and point tls.key there`,
      source,
    );
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certText);
  } catch {
    throw new StartupError(
      `tls.cert (${paths.cert}) does not parse as an X.509 certificate`,
      "tls.cert",
      "check the file: openssl x509 -noout -text -in FILE shows what it holds",
      source,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyText);
  } catch {
    throw new StartupError(
      `tls.key (${paths.key}) does not parse as a private key`,
      "tls.key",
      "check the file: openssl pkey -noout -text -in FILE shows what it holds",
      source,
    );
  }
  if (!cert.checkPrivateKey(key)) {
    throw new StartupError(
      `tls.key (${paths.key}) is not the private key of the certificate in tls.cert (${paths.cert}): the two do not belong together`,
      "tls.key",
      `point tls.key at the key the certificate was issued for (the public keys must be equal: openssl x509 -noout -pubkey -in ${paths.cert} and openssl pkey -pubout -in ${paths.key})`,
      source,
    );
  }
}

function readTlsFile(path: string, key: string, source: ConfigSource): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT")
      throw new StartupError(
        `${key} (${path}) does not exist`,
        key,
        `correct the path in ${key}, or remove tls.cert and tls.key to use a generated self-signed certificate`,
        source,
      );
    if (code === "EACCES") {
      throw new StartupError(
        `${key} (${path}) cannot be read: permission denied`,
        key,
        "make it readable by the user postern starts as (root reads it at start; a SIGHUP reload reads it as process.user)",
        source,
      );
    }
    if (code === "EISDIR") throw new StartupError(`${key} (${path}) is a directory, not a file`, key, `name the PEM file itself in ${key}`, source);
    throw new StartupError(`${key} (${path}) cannot be read: ${(err as Error).message}`, key, `check ${key}`, source);
  }
}
