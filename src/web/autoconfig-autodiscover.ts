/**
 * Microsoft Autodiscover, the "POX" (plain old XML) form Outlook and Thunderbird use: a POST of
 * <Autodiscover><Request><EMailAddress>… in the outlook requestschema/2006 namespace, answered in
 * responseschema/2006 with an outlook/responseschema/2006a Response ([MS-OXDSCLI] §2.2.3-2.2.4).
 * The request is read with one bounded regular expression, never an XML parser: no entities, no
 * DTD, nothing expanded — a character reference in the address is simply not an address.
 */
import type { ClientSettings } from "./autoconfig-settings.js";
import { escapeXml as x } from "./xml-escape.js";

export const AUTODISCOVER_RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";
export const OUTLOOK_RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";

/** The text of the one <EMailAddress> element (any namespace prefix), trimmed; undefined if none or several. */
export function emailAddressOfAutodiscoverRequest(body: string): string | undefined {
  const found = [...body.matchAll(/<(?:[A-Za-z_][\w.-]*:)?EMailAddress\s*>([^<]{1,320})<\/(?:[A-Za-z_][\w.-]*:)?EMailAddress\s*>/g)];
  if (found.length !== 1) return undefined;
  return found[0]![1]!.trim();
}

/**
 * Protocol elements: Encryption "SSL" is implicit TLS, "TLS" is STARTTLS (Outlook's own words for
 * the two); SSL "on" in both, SPA "off" (Microsoft's NTLM login, which Postern does not offer),
 * AuthRequired "on"; LoginName is the full address.
 */
export function autodiscoverAnswer(s: ClientSettings, address: string): string {
  const protocol = (type: string, server: string, port: number, socketType: string) =>
    [
      "      <Protocol>",
      `        <Type>${x(type)}</Type>`,
      `        <Server>${x(server)}</Server>`,
      `        <Port>${x(port)}</Port>`,
      `        <LoginName>${x(address)}</LoginName>`,
      "        <DomainRequired>off</DomainRequired>",
      "        <SPA>off</SPA>",
      "        <SSL>on</SSL>",
      `        <Encryption>${socketType === "SSL" ? "SSL" : "TLS"}</Encryption>`,
      "        <AuthRequired>on</AuthRequired>",
      "      </Protocol>",
    ].join("\n");
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<Autodiscover xmlns="${AUTODISCOVER_RESPONSE_NS}">`,
    `  <Response xmlns="${OUTLOOK_RESPONSE_NS}">`,
    "    <Account>",
    "      <AccountType>email</AccountType>",
    "      <Action>settings</Action>",
    ...s.incoming.map((i) => protocol(i.type === "imap" ? "IMAP" : "POP3", i.host, i.port, i.socketType)),
    ...s.submission.map((o) => protocol("SMTP", s.hostname, o.port, o.socketType)),
    "    </Account>",
    "  </Response>",
    "</Autodiscover>",
    "",
  ].join("\n");
}
