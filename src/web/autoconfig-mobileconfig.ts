/**
 * Apple configuration profile (.mobileconfig) with one com.apple.mail.managed payload
 * (Apple Device Management, "Mail"). An email payload must name an incoming (IMAP or POP) server,
 * and Postern serves neither: without web.incoming there is no profile (404 with the reason).
 *
 * Signing: only a signature by a certificate that chains to a public root makes iOS/macOS show
 * the profile as "Verified"; one by a self-signed or private-CA certificate shows "Not Verified",
 * exactly as no signature does. So the profile is signed (CMS SignedData, DER, content attached:
 * `openssl smime -sign -nodetach -outform der`) when the server's certificate chains to one of
 * Node's bundled roots, and sent unsigned otherwise (README "Client autoconfiguration").
 */
import { execFile } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { rootCertificates } from "node:tls";
import { promisify } from "node:util";
import type { ClientSettings } from "./autoconfig-settings.js";
import { escapeXml as x } from "./xml-escape.js";

const run = promisify(execFile);

export interface ProfileSigner {
  sign(profile: Buffer): Promise<Buffer>;
}

export type MobileconfigAnswer = { kind: "profile"; body: Buffer; filename: string; signed: boolean } | { kind: "none"; reason: string };

type PlistValue = string | number | boolean | PlistValue[] | { [key: string]: PlistValue };

function plistValue(v: PlistValue, indent: string): string {
  if (typeof v === "string") return `${indent}<string>${x(v)}</string>`;
  if (typeof v === "number") return `${indent}<integer>${x(Math.trunc(v))}</integer>`;
  if (typeof v === "boolean") return `${indent}<${v ? "true" : "false"}/>`;
  if (Array.isArray(v)) return [`${indent}<array>`, ...v.map((e) => plistValue(e, `${indent}  `)), `${indent}</array>`].join("\n");
  return [
    `${indent}<dict>`,
    ...Object.entries(v).flatMap(([k, e]) => [`${indent}  <key>${x(k)}</key>`, plistValue(e, `${indent}  `)]),
    `${indent}</dict>`,
  ].join("\n");
}

/** A stable UUID per address and payload: the same profile installed twice replaces itself. */
function uuidOf(...parts: string[]): string {
  const h = createHash("sha256")
    .update(`postern-mobileconfig\n${parts.join("\n")}`)
    .digest("hex");
  // RFC 9562 §5.8 (custom, version 8) layout, variant 10.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((Number.parseInt(h[16]!, 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`.toUpperCase();
}

export function mobileconfigProfile(s: ClientSettings, address: string): Buffer | string {
  const incoming = s.incoming[0];
  if (!incoming) return "no incoming mail server is configured (web.incoming): Apple mail profiles need one";
  const outgoing = s.submission[0];
  if (!outgoing) return "no submission listener is configured";
  const [local, domain] = [address.slice(0, address.lastIndexOf("@")), address.slice(address.lastIndexOf("@") + 1)];
  const reversed = `${domain.split(".").reverse().join(".")}.${local.replace(/[^A-Za-z0-9-]/g, "-")}`;
  const profile: PlistValue = {
    PayloadContent: [
      {
        EmailAccountDescription: address,
        EmailAccountType: incoming.type === "imap" ? "EmailTypeIMAP" : "EmailTypePOP",
        EmailAddress: address,
        IncomingMailServerAuthentication: "EmailAuthPassword",
        IncomingMailServerHostName: incoming.host,
        IncomingMailServerPortNumber: incoming.port,
        IncomingMailServerUseSSL: incoming.socketType === "SSL",
        IncomingMailServerUsername: address,
        OutgoingMailServerAuthentication: "EmailAuthPassword",
        OutgoingMailServerHostName: s.hostname,
        OutgoingMailServerPortNumber: outgoing.port,
        // UseSSL false on 587: the client then uses STARTTLS, which the submission port requires anyway.
        OutgoingMailServerUseSSL: outgoing.socketType === "SSL",
        OutgoingMailServerUsername: address,
        OutgoingPasswordSameAsIncomingPassword: true,
        PayloadDisplayName: `Mail (${address})`,
        PayloadIdentifier: `${reversed}.email.account`,
        PayloadType: "com.apple.mail.managed",
        PayloadUUID: uuidOf(address, "account"),
        PayloadVersion: 1,
      },
    ],
    PayloadDescription: `Mail settings for ${address}`,
    PayloadDisplayName: `${address} email account`,
    PayloadIdentifier: `${reversed}.email`,
    PayloadRemovalDisallowed: false,
    PayloadType: "Configuration",
    PayloadUUID: uuidOf(address, "config"),
    PayloadVersion: 1,
  };
  return Buffer.from(
    [
      '<?xml version="1.0" encoding="UTF-8"?>',
      '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
      '<plist version="1.0">',
      plistValue(profile, ""),
      "</plist>",
      "",
    ].join("\n"),
  );
}

export async function mobileconfigAnswer(s: ClientSettings, address: string, signer?: ProfileSigner): Promise<MobileconfigAnswer> {
  const profile = mobileconfigProfile(s, address);
  if (typeof profile === "string") return { kind: "none", reason: profile };
  const filename = `email-${address.replace(/[^A-Za-z0-9.-]/g, "-")}.mobileconfig`;
  if (!signer) return { kind: "profile", body: profile, filename, signed: false };
  return { kind: "profile", body: await signer.sign(profile), filename, signed: true };
}

/** The PEM certificates of a bundle, leaf first. */
function certificatesOf(pem: string | Buffer): X509Certificate[] {
  const blocks = String(pem).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

let publicRoots: X509Certificate[] | undefined;

/**
 * Whether the leaf of `pem` (with the intermediates after it) chains to one of `roots` (default:
 * the Mozilla roots Node carries, tls.rootCertificates), every certificate on the way valid now.
 */
export function chainsToPublicRoot(pem: string | Buffer, roots?: X509Certificate[], now = new Date()): boolean {
  const anchors = roots ?? (publicRoots ??= rootCertificates.map((r) => new X509Certificate(r)));
  const bundle = certificatesOf(pem);
  const valid = (c: X509Certificate) => new Date(c.validFrom) <= now && now <= new Date(c.validTo);
  let current: X509Certificate | undefined = bundle[0];
  for (let depth = 0; current && depth < 8; depth++) {
    if (!valid(current)) return false;
    const cur: X509Certificate = current;
    if (anchors.some((r) => valid(r) && cur.checkIssued(r) && cur.verify(r.publicKey))) return true;
    // A self-signed certificate that is no anchor ends the walk.
    if (cur.checkIssued(cur)) return false;
    current = bundle.find((c) => c !== cur && cur.checkIssued(c) && cur.verify(c.publicKey));
  }
  return false;
}

/** A signer for the server's certificate when it chains to a public root (`roots`: tests only); otherwise undefined. */
export function profileSignerFor(cert: Buffer, key: Buffer, roots?: X509Certificate[]): ProfileSigner | undefined {
  if (!chainsToPublicRoot(cert, roots)) return undefined;
  return {
    async sign(profile: Buffer): Promise<Buffer> {
      const dir = await mkdtemp(join(tmpdir(), "postern-sign-"));
      try {
        const [certPath, keyPath, inPath, outPath] = ["cert.pem", "key.pem", "profile.xml", "profile.der"].map((f) => join(dir, f)) as [
          string,
          string,
          string,
          string,
        ];
        await writeFile(certPath, cert, { mode: 0o600 });
        await writeFile(keyPath, key, { mode: 0o600 });
        await writeFile(inPath, profile, { mode: 0o600 });
        // -certfile: the intermediates travel in the signature, so the device can build the chain.
        await run("openssl", [
          "smime",
          "-sign",
          "-nodetach",
          "-binary",
          "-outform",
          "der",
          "-signer",
          certPath,
          "-inkey",
          keyPath,
          "-certfile",
          certPath,
          "-in",
          inPath,
          "-out",
          outPath,
        ]);
        return await readFile(outPath);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}
