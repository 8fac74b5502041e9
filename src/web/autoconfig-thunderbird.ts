/**
 * Thunderbird's autoconfig document (clientConfig 1.1,
 * https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat; the IETF draft
 * draft-ietf-mailmaint-autoconfig describes the same format). The username is the placeholder
 * %EMAILADDRESS%, which the client fills in: the address asked about is never echoed.
 */
import type { ClientSettings } from "./autoconfig-settings.js";
import { escapeXml as x } from "./xml-escape.js";

/** `domain` must be one of ours (autoconfig.ts checks before calling). */
export function thunderbirdConfig(s: ClientSettings, domain: string): string {
  // password-cleartext: the password goes as AUTH PLAIN/LOGIN, always inside TLS here (465, or 587
  // after STARTTLS); OAuth2 after it, for clients that know the issuer (Thunderbird only uses it for
  // issuers it has a client registration with, so a password client is never steered to it).
  const auth = ["password-cleartext", ...(s.oauth ? ["OAuth2"] : [])];
  const server = (tag: "incomingServer" | "outgoingServer", type: string, host: string, port: number, socketType: string) =>
    [
      `    <${tag} type="${x(type)}">`,
      `      <hostname>${x(host)}</hostname>`,
      `      <port>${x(port)}</port>`,
      `      <socketType>${x(socketType)}</socketType>`,
      "      <username>%EMAILADDRESS%</username>",
      ...auth.map((a) => `      <authentication>${x(a)}</authentication>`),
      `    </${tag}>`,
    ].join("\n");
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<clientConfig version="1.1">',
    `  <emailProvider id="${x(domain)}">`,
    `    <domain>${x(domain)}</domain>`,
    `    <displayName>${x(domain)}</displayName>`,
    `    <displayShortName>${x(domain)}</displayShortName>`,
    ...s.incoming.map((i) => server("incomingServer", i.type, i.host, i.port, i.socketType)),
    ...s.submission.map((o) => server("outgoingServer", "smtp", s.hostname, o.port, o.socketType)),
    "  </emailProvider>",
  ];
  if (s.oauth) {
    lines.push("  <oAuth2>", `    <issuer>${x(new URL(s.oauth.issuer).host)}</issuer>`);
    if (s.oauth.scope) lines.push(`    <scope>${x(s.oauth.scope)}</scope>`);
    lines.push("  </oAuth2>");
  }
  lines.push("</clientConfig>", "");
  return lines.join("\n");
}
