/**
 * The reply to HELO and EHLO (RFC 5321 §4.1.1.1): the greeting line, and after EHLO the service
 * extensions this listener offers right now.
 */
import { reply, type Reply } from "./reply.js";

export interface EhloOffer {
  hostname: string;
  remoteIp: string;
  messageSize: number;
  /** STARTTLS is offered: a certificate is loaded and the connection is not TLS yet (RFC 3207). */
  startTls: boolean;
  /** SASL mechanisms offered (RFC 4954); none: no AUTH keyword. */
  mechanisms: string[];
  /**
   * REQUIRETLS is offered (RFC 8689 §2): only on a TLS-protected session, since a client may use
   * the MAIL parameter only there and must see the keyword in the EHLO after STARTTLS.
   */
  requireTls?: boolean;
}

export function helloReply(kind: "EHLO" | "HELO", domain: string, offer: EhloOffer): Reply {
  const first = `${offer.hostname} Hello ${domain} [${offer.remoteIp}]`;
  if (kind === "HELO") return reply(250, undefined, first);
  const ext = ["PIPELINING", `SIZE ${offer.messageSize}`, "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN", "CHUNKING"];
  if (offer.startTls) ext.push("STARTTLS");
  if (offer.mechanisms.length > 0) ext.push(`AUTH ${offer.mechanisms.join(" ")}`);
  if (offer.requireTls) ext.push("REQUIRETLS");
  return reply(250, undefined, first, ...ext);
}
