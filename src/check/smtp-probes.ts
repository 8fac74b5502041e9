/**
 * Protocol items: greeting, EHLO extensions, AUTH exposure before TLS, the open-relay probe, the
 * submission port's AUTH requirement, VRFY/EXPN and bare LF. No probe ever sends DATA, so
 * nothing is ever relayed, even through a server that is open.
 */
import { randomBytes } from "node:crypto";
import type { PeerCapabilities, SmtpReply } from "../delivery/smtp-reply.js";
import { describeReply } from "../delivery/smtp-reply.js";
import { Probe } from "./probe.js";
import { item, type CheckItem, type CheckTarget } from "./types.js";

const show = (r: SmtpReply) => describeReply(r).slice(0, 160);

export function extensionItems(caps: PeerCapabilities, t: CheckTarget): CheckItem[] {
  const items: CheckItem[] = [];
  items.push(
    caps.size
      ? item("size", "PASS", caps.sizeLimit ? `SIZE ${caps.sizeLimit} (${(caps.sizeLimit / 1048576).toFixed(1)} MiB)` : "SIZE offered without a fixed limit")
      : item("size", "WARN", "SIZE not offered (RFC 1870): clients learn the limit only after sending", "Postern: limits.messageSize; Postfix: message_size_limit; Sendmail: confMAX_MESSAGE_SIZE"),
  );
  items.push(
    caps.pipelining
      ? item("pipelining", "PASS", "PIPELINING offered (RFC 2920)")
      : item("pipelining", "WARN", "PIPELINING not offered: every command costs a round trip", "Postfix: remove PIPELINING from smtpd_discard_ehlo_keywords"),
  );
  items.push(
    caps.enhancedStatusCodes
      ? item("enhancedstatuscodes", "PASS", "ENHANCEDSTATUSCODES offered (RFC 2034)")
      : item("enhancedstatuscodes", "WARN", "ENHANCEDSTATUSCODES not offered: refusals carry no RFC 3463 code", "Postfix: remove it from smtpd_discard_ehlo_keywords"),
  );
  if (t.mode !== "submissions") {
    items.push(
      caps.starttls
        ? item("starttls", "PASS", "STARTTLS offered (RFC 3207)")
        : item(
            "starttls",
            "FAIL",
            "STARTTLS not offered: mail and passwords cross in clear",
            "Postern: offered whenever a certificate is loaded (tls.cert/tls.key, or the generated one); Postfix: smtpd_tls_security_level = may (25) / encrypt (587); Sendmail: confSERVER_CERT and confSERVER_KEY",
          ),
    );
  }
  return items;
}

const FIX_CLEAR_AUTH =
  "Postern: remove authWithoutTls: true from the listener; Postfix: smtpd_tls_auth_only = yes; Sendmail: define(`confAUTH_OPTIONS', `p,y')";

/** On a connection before TLS: is AUTH offered, or does the server take credentials anyway? */
export async function authBeforeTls(p: Probe, caps: PeerCapabilities): Promise<CheckItem> {
  if (caps.auth.length > 0) {
    return item("auth-before-tls", "FAIL", `AUTH ${caps.auth.join(" ")} offered before TLS: passwords can cross in clear`, FIX_CLEAR_AUTH);
  }
  // A server may take AUTH without offering it. Dummy credentials only: no real password is sent.
  const dummy = Buffer.from("\0postern-check\0not-a-password").toString("base64");
  const r = await p.cmd(`AUTH PLAIN ${dummy}`);
  if (r.code === 235 || r.code === 535 || r.code === 334) {
    if (r.code === 334) await p.cmd("*").catch(() => undefined);
    return item("auth-before-tls", "FAIL", `AUTH not offered but credentials were examined before TLS (${show(r)})`, FIX_CLEAR_AUTH);
  }
  return item("auth-before-tls", "PASS", `no AUTH before TLS (${show(r)})`);
}

export function mechanismItem(caps: PeerCapabilities, t: CheckTarget): CheckItem {
  const mechs = caps.auth;
  if (mechs.length === 0) {
    return t.mode === "mta"
      ? item("auth-mechanisms", "INFO", "no AUTH offered after TLS (fine for a port-25-only MTA)")
      : item("auth-mechanisms", "FAIL", "submission port offers no AUTH after TLS", "Postern: submission listeners always offer AUTH; Postfix: -o smtpd_sasl_auth_enable=yes on the submission service");
  }
  const historic = mechs.filter((m) => m === "DIGEST-MD5" || m === "NTLM" || m === "GSSAPI-OLD");
  if (historic.length > 0) return item("auth-mechanisms", "WARN", `offered: ${mechs.join(" ")}; ${historic.join(" ")} is historic (RFC 6331)`, "Postern: smtp.digestMd5: false; Postfix/Cyrus: mech_list without DIGEST-MD5");
  return item("auth-mechanisms", "PASS", `offered: ${mechs.join(" ")}`);
}

/** The classic relay tricks (SECURITY.md rule 7): a local-looking address that routes elsewhere. */
export function relayCases(domain: string, foreign: string): { label: string; rcpt: string }[] {
  const [local, far] = foreign.split("@") as [string, string];
  return [
    { label: "plain foreign recipient", rcpt: `<${foreign}>` },
    { label: "percent hack", rcpt: `<${local}%${far}@${domain}>` },
    { label: "bang path", rcpt: `<${far}!${local}@${domain}>` },
    { label: "source route", rcpt: `<@${domain}:${foreign}>` },
    { label: "quoted @", rcpt: `<"${foreign}"@${domain}>` },
    { label: "quoted @ and percent", rcpt: `<"${local}%${far}"@${domain}>` },
    { label: "foreign via IP literal", rcpt: `<${local}@[192.0.2.1]>` },
  ];
}

const FIX_RELAY =
  "Postern: keep mynetworks to your own hosts (never 0.0.0.0/0); Postfix: mynetworks and smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination; Sendmail: remove promiscuous_relay/relay_entire_domain, check access db";

/** MAIL FROM a foreign address, RCPT TO each trick, RSET — never DATA. One item per trick. */
export async function relayProbe(open: () => Promise<Probe>, t: CheckTarget, domain: string): Promise<CheckItem[]> {
  const items: CheckItem[] = [];
  let p: Probe | undefined;
  for (const c of relayCases(domain, t.relayTo)) {
    const id = `open-relay: ${c.label}`;
    try {
      if (!p || p.closed) {
        p = await open();
      }
      const mail = await p.cmd(`MAIL FROM:<postern-check@example.net>`);
      if (mail.code >= 300) {
        items.push(item(id, "PASS", `MAIL from a foreign sender refused: ${show(mail)}`));
        continue;
      }
      const rcpt = await p.cmd(`RCPT TO:${c.rcpt}`);
      await p.cmd("RSET").catch(() => undefined);
      if (rcpt.code >= 200 && rcpt.code < 300) items.push(item(id, "FAIL", `RCPT TO:${c.rcpt} accepted without AUTH: ${show(rcpt)}`, FIX_RELAY));
      else items.push(item(id, "PASS", `RCPT TO:${c.rcpt} refused: ${show(rcpt)}`));
    } catch (err) {
      items.push(item(id, "PASS", `connection ended on RCPT TO:${c.rcpt} (${(err as Error).message})`));
      p?.destroy();
      p = undefined;
    }
  }
  await p?.quit();
  return items;
}

/** RFC 6409 §4.3: a submission server refuses MAIL until the client has authenticated. */
export async function submissionNeedsAuth(p: Probe, domain: string): Promise<CheckItem> {
  const fix = "Postern: submission listeners always require AUTH; Postfix: -o smtpd_client_restrictions=permit_sasl_authenticated,reject on the submission service";
  const mail = await p.cmd(`MAIL FROM:<postern-check@${domain}>`);
  if (mail.code >= 400) return item("submission-requires-auth", "PASS", `MAIL without AUTH refused: ${show(mail)}`);
  const rcpt = await p.cmd(`RCPT TO:<postmaster@${domain}>`);
  await p.cmd("RSET").catch(() => undefined);
  if (rcpt.code < 300) return item("submission-requires-auth", "FAIL", `submission accepted MAIL and RCPT without AUTH (${show(rcpt)})`, fix);
  return item("submission-requires-auth", "WARN", `MAIL without AUTH accepted (${show(mail)}); RCPT refused`, fix);
}

/** RFC 5321 §7.3: VRFY/EXPN may answer 252 rather than confirm users; a difference is an oracle. */
export async function vrfyExpn(p: Probe, domain: string): Promise<CheckItem[]> {
  const fix = "Postern always answers 252; Postfix: disable_vrfy_command = yes; Sendmail: define(`confPRIVACY_FLAGS', `goaway')";
  const items: CheckItem[] = [];
  for (const verb of ["VRFY", "EXPN"]) {
    const known = await p.cmd(`${verb} postmaster@${domain}`);
    const unknown = await p.cmd(`${verb} no-such-user-${randomBytes(4).toString("hex")}@${domain}`);
    const id = verb.toLowerCase();
    const confirms = (r: SmtpReply) => r.code === 250 || r.code === 251;
    if (confirms(known) && !confirms(unknown)) items.push(item(id, "FAIL", `${verb} tells users apart (${known.code} vs ${unknown.code}): address harvesting`, fix));
    else if (confirms(known)) items.push(item(id, "WARN", `${verb} answers ${show(known)}`, fix));
    else items.push(item(id, "PASS", `${verb} does not confirm users (${known.code})`));
  }
  return items;
}

/**
 * A bare LF must not end a command line (SECURITY.md rule 1; SMTP smuggling CVE-2023-51764..6).
 * "NOOP<LF>NOOP<CRLF>" is one malformed line to a strict server and two commands to a lax one, so
 * the answer needs no timing.
 */
export async function bareLf(p: Probe): Promise<CheckItem> {
  const fix = "Postern refuses it always; Postfix ≥3.9: smtpd_forbid_bare_newline = normalize (3.8.4: yes); Sendmail ≥8.18: srv_features 'O'";
  p.write("NOOP\nNOOP\r\n");
  let first: SmtpReply;
  try {
    first = await p.reply();
  } catch {
    return item("bare-lf", "PASS", "bare LF in a command: the server closed the connection");
  }
  if (first.code >= 500) return item("bare-lf", "PASS", `bare LF in a command refused: ${show(first)}`);
  const second = await p.reply().catch(() => undefined);
  if (second && second.code < 300) return item("bare-lf", "WARN", "bare LF ends a command line (NOOP<LF>NOOP<CRLF> got two replies)", fix);
  return item("bare-lf", "PASS", `bare LF not taken as a line end (${show(first)})`);
}
