/**
 * TLS items: protocol versions accepted (RFC 8996: TLS 1.0 and 1.1 must be refused), CBC suites
 * on submission ports, negotiated cipher, certificate chain, host name match (RFC 6125) and days
 * to expiry, implicit TLS (RFC 8314).
 */
import { checkServerIdentity, type ConnectionOptions, type TLSSocket } from "node:tls";
import { Probe, sni } from "./probe.js";
import { item, type CheckItem, type CheckTarget } from "./types.js";

const FIX_VERSIONS =
  "Postern refuses TLS < 1.2 always (tls.minVersion); Postfix: smtpd_tls_protocols = >=TLSv1.2 and smtpd_tls_mandatory_protocols = >=TLSv1.2; Sendmail: O CipherList / ServerSSLOptions +SSL_OP_NO_TLSv1 +SSL_OP_NO_TLSv1_1";
const FIX_CERT = "Postern: tls.cert (full chain, leaf first) and tls.key; Postfix: smtpd_tls_chain_files; Sendmail: confSERVER_CERT, confCACERT";

/** A connection that has reached TLS: implicit, or EHLO + STARTTLS. null when STARTTLS is not possible. */
export async function tlsSession(t: CheckTarget, implicit: boolean, port: number, tls: ConnectionOptions): Promise<Probe | null> {
  const opts: ConnectionOptions = { rejectUnauthorized: false, servername: sni(t.servername), ...(t.ca ? { ca: t.ca } : {}), ...tls };
  if (implicit) {
    const p = await Probe.open(t.host, port, t.timeoutMs, opts);
    return p;
  }
  const p = await Probe.open(t.host, port, t.timeoutMs);
  try {
    await p.reply();
    await p.ehlo(t.ehlo);
    const refused = await p.starttls(t.host, opts);
    if (refused) {
      p.destroy();
      return null;
    }
    return p;
  } catch (err) {
    p.destroy();
    throw err;
  }
}

type Outcome = { kind: "accepted"; version: string; cipher: string } | { kind: "refused"; detail: string } | { kind: "untestable"; detail: string };

/** A handshake with the probe's own offer: what the server accepts, not what it prefers. */
async function tryHandshake(t: CheckTarget, implicit: boolean, port: number, offer: ConnectionOptions, what: string): Promise<Outcome> {
  try {
    const p = await tlsSession(t, implicit, port, offer);
    if (!p) return { kind: "untestable", detail: "STARTTLS refused" };
    const c = p.tlsSocket.getCipher();
    const accepted = {
      kind: "accepted",
      version: p.tlsSocket.getProtocol() ?? "?",
      cipher: c.standardName ? `${c.name} (${c.standardName})` : c.name,
    } as const;
    p.destroy();
    return accepted;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "";
    if (code === "ERR_SSL_NO_PROTOCOLS_AVAILABLE" || code === "ERR_SSL_NO_CIPHERS_AVAILABLE") {
      return { kind: "untestable", detail: `this machine's OpenSSL cannot offer ${what} (${code})` };
    }
    return { kind: "refused", detail: code || (err as Error).message };
  }
}

const onPort = (t: CheckTarget, port: number): string => (port === t.port ? "" : ` on port ${port}`);

/**
 * TLS 1.0 and 1.1 offered alone. Node's OpenSSL 3 will not offer them at its default security
 * level; SECLEVEL=0 lets the probe ask, so the *server's* answer is what gets reported.
 * `idPrefix` tells a second port's items apart (the submissions port checked beside port 25).
 */
export async function checkTlsVersions(t: CheckTarget, implicit: boolean, port = t.port, idPrefix = ""): Promise<CheckItem[]> {
  const items: CheckItem[] = [];
  for (const [version, label] of [
    ["TLSv1", "1.0"],
    ["TLSv1.1", "1.1"],
  ] as const) {
    const id = `${idPrefix}tls-${label}-refused`;
    const o = await tryHandshake(t, implicit, port, { minVersion: version, maxVersion: version, ciphers: "DEFAULT:@SECLEVEL=0" }, version);
    if (o.kind === "accepted") items.push(item(id, "FAIL", `TLS ${label} accepted${onPort(t, port)} (RFC 8996 deprecates it)`, FIX_VERSIONS));
    else if (o.kind === "refused") items.push(item(id, "PASS", `TLS ${label} refused${onPort(t, port)} (${o.detail})`));
    else items.push(item(id, "NOT TESTED", o.detail));
  }
  return items;
}

/**
 * Every TLS 1.2 suite that is not AEAD: CBC with HMAC (MAC-then-encrypt, the padding oracles of
 * Lucky13 and POODLE's kin) and anything weaker that this OpenSSL still has (NULL, anonymous).
 * A name list would miss suites: one for RSA certificates finds nothing on an ECDSA server.
 * PSK and SRP need a shared secret, so a server cannot pick them here.
 */
const NON_AEAD_TLS12 = "ALL:COMPLEMENTOFALL:!AESGCM:!AESCCM:!CHACHA20:!ARIAGCM:!PSK:!SRP:@SECLEVEL=0";
const WEAKER_THAN_CBC = /NULL|RC4|DES|EXPORT|anon|ADH|AECDH|MD5/i;

const FIX_SUBMISSION_CIPHERS =
  "Postern: tlsProfile: intermediate (the default on submission listeners) or modern; Postfix: for the submission/submissions services, -o smtpd_tls_mandatory_protocols=>=TLSv1.2 -o smtpd_tls_mandatory_ciphers=high with tls_high_cipherlist set to ECDHE+AEAD suites (Mozilla intermediate); Sendmail: CipherList";

/**
 * Submission carries passwords, and its clients are current mail programs: RFC 9325 §4.2 lists
 * only AEAD suites for TLS 1.2 (and TLS 1.3 has nothing else). A CBC suite accepted is a WARN.
 * Port 25 is left alone: there any encryption beats clear text (RFC 7435).
 */
export async function checkSubmissionCiphers(t: CheckTarget, implicit: boolean, port = t.port, idPrefix = ""): Promise<CheckItem> {
  const id = `${idPrefix}tls-cbc-refused`;
  const o = await tryHandshake(t, implicit, port, { maxVersion: "TLSv1.2", ciphers: NON_AEAD_TLS12 }, "non-AEAD TLS 1.2 suites");
  if (o.kind === "accepted") {
    const kind = WEAKER_THAN_CBC.test(o.cipher) ? "a weak (worse than CBC) suite" : "a CBC-mode suite";
    return item(
      id,
      "WARN",
      `submission port${onPort(t, port)} accepts ${kind} when a client offers only those: ${o.cipher}, ${o.version}; only AEAD suites (GCM, ChaCha20-Poly1305) belong on a submission port (RFC 9325 §4.2)`,
      FIX_SUBMISSION_CIPHERS,
    );
  }
  if (o.kind === "refused") return item(id, "PASS", `no CBC or weaker suite accepted${onPort(t, port)} (offered all non-AEAD TLS 1.2 suites: ${o.detail})`);
  return item(id, "NOT TESTED", o.detail);
}

const WEAK_CIPHER = /RC4|3DES|DES-CBC|NULL|EXPORT|anon|MD5/i;

/** Items about the negotiated session and the certificate, from a connection made with defaults. */
export function checkSessionAndCertificate(t: CheckTarget, socket: TLSSocket): CheckItem[] {
  const items: CheckItem[] = [];
  const version = socket.getProtocol() ?? "unknown";
  const cipher = socket.getCipher();
  items.push(
    version === "TLSv1.3" || version === "TLSv1.2"
      ? item("tls-protocol", "PASS", `negotiated ${version}`)
      : item("tls-protocol", "FAIL", `negotiated ${version}`, FIX_VERSIONS),
  );
  const name = cipher?.standardName ?? cipher?.name ?? "unknown";
  const forwardSecret = version === "TLSv1.3" || /ECDHE|DHE/.test(cipher?.name ?? "");
  if (WEAK_CIPHER.test(name))
    items.push(item("tls-cipher", "FAIL", `weak cipher ${name}`, "Postfix: smtpd_tls_exclude_ciphers = aNULL, RC4, 3DES, MD5; Postern uses Node's defaults"));
  else if (!forwardSecret)
    items.push(item("tls-cipher", "WARN", `${name} has no forward secrecy`, "prefer ECDHE key exchange; Postfix: tls_preempt_cipherlist = yes"));
  else items.push(item("tls-cipher", "PASS", name));

  const cert = socket.getPeerCertificate(true);
  if (!cert?.raw) {
    items.push(item("tls-certificate", "FAIL", "the server sent no certificate", FIX_CERT));
    return items;
  }
  if (socket.authorized) items.push(item("tls-chain", "PASS", `chain verifies (issuer ${cert.issuer?.CN ?? "?"})`));
  else
    items.push(
      item("tls-chain", "WARN", `chain does not verify: ${String(socket.authorizationError)}${t.ca ? "" : " (use --ca to trust a private CA)"}`, FIX_CERT),
    );
  const mismatch = checkServerIdentity(t.servername, cert);
  if (mismatch)
    items.push(
      item(
        "tls-hostname",
        "WARN",
        `certificate does not match ${t.servername}: ${mismatch.message}`,
        `${FIX_CERT}; the certificate must name the MX / submission host (--servername sets the name checked)`,
      ),
    );
  else items.push(item("tls-hostname", "PASS", `certificate matches ${t.servername}`));
  const days = Math.floor((Date.parse(cert.valid_to) - Date.now()) / 86_400_000);
  if (days < 0)
    items.push(item("tls-expiry", "FAIL", `certificate expired ${-days} days ago (${cert.valid_to})`, `renew it; ${FIX_CERT}; then SIGHUP postern`));
  else if (days < 14)
    items.push(item("tls-expiry", "WARN", `certificate expires in ${days} days (${cert.valid_to})`, "renew it (certbot renew), then SIGHUP postern"));
  else items.push(item("tls-expiry", "PASS", `certificate valid for ${days} more days`));
  return items;
}

/** RFC 8314 §3.3: implicit TLS for submission on 465. `reached`: a TLS session came up there. */
export async function checkImplicitTls(t: CheckTarget, port: number): Promise<{ item: CheckItem; reached: boolean }> {
  try {
    const p = await Probe.open(t.host, port, t.timeoutMs, { rejectUnauthorized: false, servername: sni(t.servername) });
    const greeting = await p.reply().catch((err: Error) => err);
    const version = p.tlsSocket.getProtocol();
    await p.quit();
    if (greeting instanceof Error)
      return { item: item("implicit-tls", "WARN", `port ${port}: TLS works but no greeting (${greeting.message})`), reached: true };
    if (greeting.code === 220) return { item: item("implicit-tls", "PASS", `port ${port} speaks SMTP over implicit TLS (${version})`), reached: true };
    return { item: item("implicit-tls", "WARN", `port ${port}: TLS works but the greeting was ${greeting.code}`), reached: true };
  } catch (err) {
    return {
      item: item(
        "implicit-tls",
        "WARN",
        `no implicit TLS on port ${port}: ${(err as Error).message}`,
        "RFC 8314 prefers implicit TLS for submission; Postern: a listener with mode: submissions on 465; Postfix: the submissions service in master.cf with smtpd_tls_wrappermode=yes",
      ),
      reached: false,
    };
  }
}
