/**
 * Protocol items: greeting, EHLO extensions, AUTH exposure before TLS, the open-relay probe (in
 * clear, after STARTTLS, over implicit TLS), the submission port's AUTH requirement, VRFY/EXPN and
 * bare LF. No probe ever sends DATA, so nothing is ever relayed, even through a server that is open.
 */
import { randomBytes } from "node:crypto";
import type { PeerCapabilities, SmtpReply } from "../delivery/smtp-reply.js";
import { describeReply } from "../delivery/smtp-reply.js";
import type { ConnectionOptions } from "node:tls";
import { Probe, sni } from "./probe.js";
import { item, type CheckItem, type CheckTarget } from "./types.js";

const show = (r: SmtpReply) => describeReply(r).slice(0, 160);

export function extensionItems(caps: PeerCapabilities, t: CheckTarget): CheckItem[] {
  const items: CheckItem[] = [];
  items.push(
    caps.size
      ? item("size", "PASS", caps.sizeLimit ? `SIZE ${caps.sizeLimit} (${(caps.sizeLimit / 1048576).toFixed(1)} MiB)` : "SIZE offered without a fixed limit")
      : item(
          "size",
          "WARN",
          "SIZE not offered (RFC 1870): clients learn the limit only after sending",
          "Postern: limits.messageSize; Postfix: message_size_limit; Sendmail: confMAX_MESSAGE_SIZE",
        ),
  );
  items.push(
    caps.pipelining
      ? item("pipelining", "PASS", "PIPELINING offered (RFC 2920)")
      : item("pipelining", "WARN", "PIPELINING not offered: every command costs a round trip", "Postfix: remove PIPELINING from smtpd_discard_ehlo_keywords"),
  );
  items.push(
    caps.enhancedStatusCodes
      ? item("enhancedstatuscodes", "PASS", "ENHANCEDSTATUSCODES offered (RFC 2034)")
      : item(
          "enhancedstatuscodes",
          "WARN",
          "ENHANCEDSTATUSCODES not offered: refusals carry no RFC 3463 code",
          "Postfix: remove it from smtpd_discard_ehlo_keywords",
        ),
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
      : item(
          "auth-mechanisms",
          "FAIL",
          "submission port offers no AUTH after TLS",
          "Postern: submission listeners always offer AUTH; Postfix: -o smtpd_sasl_auth_enable=yes on the submission service",
        );
  }
  const historic = mechs.filter((m) => m === "DIGEST-MD5" || m === "NTLM" || m === "GSSAPI-OLD");
  if (historic.length > 0)
    return item(
      "auth-mechanisms",
      "WARN",
      `offered: ${mechs.join(" ")}; ${historic.join(" ")} is historic (RFC 6331)`,
      "Postern: smtp.digestMd5: false; Postfix/Cyrus: mech_list without DIGEST-MD5",
    );
  return item("auth-mechanisms", "PASS", `offered: ${mechs.join(" ")}`);
}

/**
 * The ways in: an attacker tries the port in clear and again after STARTTLS (a server may refuse
 * MAIL in clear with 530 and relay for anyone once TLS is up), and the implicit-TLS submissions
 * port (RFC 8314). A relay found on any of them is a FAIL.
 */
export interface RelayPath {
  name: "clear" | "STARTTLS" | "implicit TLS";
  port: number;
}

const where = (path: RelayPath): string =>
  path.name === "clear" ? "in clear" : path.name === "STARTTLS" ? "after STARTTLS" : `over implicit TLS on port ${path.port}`;

export interface RelayCase {
  label: string;
  /** The MAIL FROM path, brackets included, and how the output names it. */
  sender: string;
  from: string;
  rcpt: string;
  /** The address ends in the local domain (or its IP literal): a catch-all could also say 250. */
  localLooking: boolean;
}

const FOREIGN_SENDER = "<postern-check@example.net>";

/** RFC 5321 §4.1.3: an IPv6 literal is tagged. */
const ipLiteral = (ip: string): string => (ip.includes(":") ? `[IPv6:${ip}]` : `[${ip}]`);

/**
 * The classic relay tricks (SECURITY.md rule 7): a local-looking address that routes elsewhere,
 * and the senders some servers trust (the null sender; a sender in their own domain, Sendmail's
 * relay_local_from). `serverIp`: the address the probe reached, which a server may take as local
 * (Postfix resolve_numeric_domain).
 */
export function relayCases(domain: string, foreign: string, serverIp?: string): RelayCase[] {
  const [local, far] = foreign.split("@") as [string, string];
  const foreignSender = (label: string, rcpt: string, localLooking: boolean): RelayCase => ({
    label,
    sender: FOREIGN_SENDER,
    from: "a foreign sender",
    rcpt,
    localLooking,
  });
  const cases: RelayCase[] = [
    foreignSender("plain foreign recipient", `<${foreign}>`, false),
    foreignSender("percent hack", `<${local}%${far}@${domain}>`, true),
    foreignSender("bang path", `<${far}!${local}@${domain}>`, true),
    foreignSender("bang path without domain", `<${far}!${local}>`, true),
    foreignSender("source route", `<@${domain}:${foreign}>`, false),
    foreignSender("quoted @", `<"${foreign}"@${domain}>`, true),
    foreignSender("quoted @ and percent", `<"${local}%${far}"@${domain}>`, true),
    foreignSender("second @", `<${foreign}@${domain}>`, true),
    foreignSender("foreign via IP literal", `<${local}@[192.0.2.1]>`, false),
  ];
  if (serverIp) cases.push(foreignSender("percent hack via the server's IP literal", `<${local}%${far}@${ipLiteral(serverIp)}>`, true));
  cases.push(
    { label: "null sender to a foreign recipient", sender: "<>", from: "the null sender", rcpt: `<${foreign}>`, localLooking: false },
    { label: "local sender to a foreign recipient", sender: `<postern-check@${domain}>`, from: "a local sender", rcpt: `<${foreign}>`, localLooking: false },
  );
  return cases;
}

const FIX_RELAY =
  "Postern: keep mynetworks to your own hosts (never 0.0.0.0/0); Postfix: mynetworks and smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination (in master.cf too: an -o override on the submission services must not drop reject_unauth_destination); Sendmail: remove promiscuous_relay/relay_entire_domain/relay_local_from, check access db";

/** A new connection on the path, past greeting and EHLO (and STARTTLS and the second EHLO). */
async function openPath(t: CheckTarget, path: RelayPath): Promise<Probe> {
  const tls: ConnectionOptions = { rejectUnauthorized: false, servername: sni(t.servername), ...(t.ca ? { ca: t.ca } : {}) };
  const p = await Probe.open(t.host, path.port, t.timeoutMs, path.name === "implicit TLS" ? tls : undefined);
  try {
    const greeting = await p.reply();
    if (greeting.code !== 220) throw new Error(`greeting ${show(greeting)}`);
    let ehlo = await p.ehlo(t.ehlo);
    if (ehlo.code !== 250) throw new Error(`EHLO ${show(ehlo)}`);
    if (path.name === "STARTTLS") {
      // Tried even when EHLO does not offer it: a hidden STARTTLS is still a way in.
      const refused = await p.starttls(t.host, tls);
      if (refused) throw new NoPath(`STARTTLS refused: ${show(refused)}`);
      ehlo = await p.ehlo(t.ehlo); // RFC 3207 §4.2: the session starts over
      if (ehlo.code !== 250) throw new Error(`EHLO after STARTTLS ${show(ehlo)}`);
    }
    return p;
  } catch (err) {
    p.destroy();
    throw err;
  }
}

class NoPath extends Error {}

/** RCPTs per connection: below the soft error limits (Postfix smtpd_soft_error_limit 10) that slow erring clients. */
const RCPTS_PER_CONNECTION = 8;

/**
 * MAIL FROM, RCPT TO each trick, RSET — never DATA, so nothing is relayed even through an open
 * server. One item per trick, and one per sender whose MAIL the server refused on this path.
 * A 250 to RCPT is the failure, as Postfix (reject_unauth_destination acts at RCPT) and the
 * classic relay testers judge it: a server that takes the recipient and would refuse only at the
 * end of DATA has still agreed to relay, and may accept the next message.
 */
export async function relayProbe(t: CheckTarget, domain: string, path: RelayPath): Promise<CheckItem[]> {
  const prefix = `open-relay (${path.name})`;
  const items: CheckItem[] = [];
  let p: Probe;
  try {
    p = await openPath(t, path);
  } catch (err) {
    const why = (err as Error).message;
    if (err instanceof NoPath) return [item(prefix, "INFO", `no way in ${where(path)}: ${why}`)];
    return [item(prefix, "NOT TESTED", `cannot reach the server ${where(path)}: ${why}`)];
  }
  let rcpts = 0;
  let dead = false;
  const refusedSenders = new Set<string>();
  for (const c of relayCases(domain, t.relayTo, p.remoteAddress)) {
    if (refusedSenders.has(c.sender)) continue;
    const id = `${prefix}: ${c.label}`;
    const from = c.from;
    try {
      if (dead || p.closed || rcpts >= RCPTS_PER_CONNECTION) {
        if (!dead) await p.quit();
        dead = true; // until the new connection is up
        p = await openPath(t, path);
        dead = false;
        rcpts = 0;
      }
    } catch (err) {
      items.push(item(id, "NOT TESTED", `cannot reconnect ${where(path)}: ${(err as Error).message}`));
      continue;
    }
    try {
      const mail = await p.cmd(`MAIL FROM:${c.sender}`);
      if (mail.code >= 300) {
        refusedSenders.add(c.sender);
        items.push(
          item(
            `${prefix}: MAIL from ${from}`,
            "PASS",
            `${where(path)}: MAIL FROM:${c.sender} refused (${show(mail)}); its recipients were not tried on this path`,
          ),
        );
        continue;
      }
      rcpts++;
      const rcpt = await p.cmd(`RCPT TO:${c.rcpt}`);
      await p.cmd("RSET").catch(() => undefined);
      if (rcpt.code >= 200 && rcpt.code < 300) {
        const catchAll = c.localLooking ? " (if a catch-all delivers this literal address locally, it is not a relay; check where it goes)" : "";
        items.push(
          item(
            id,
            "FAIL",
            `${where(path)}: RCPT TO:${c.rcpt} from ${from} accepted without AUTH (${show(rcpt)}) — an open relay even if the server would refuse the message after DATA: accepting the recipient is the relay decision${catchAll}`,
            FIX_RELAY,
          ),
        );
      } else if (rcpt.code >= 400 && rcpt.code < 500) {
        items.push(
          item(id, "WARN", `${where(path)}: RCPT TO:${c.rcpt} refused only for now (${show(rcpt)}): not conclusive, run the check again (greylisting?)`),
        );
      } else items.push(item(id, "PASS", `${where(path)}: RCPT TO:${c.rcpt} refused (${show(rcpt)})`));
    } catch (err) {
      items.push(item(id, "PASS", `${where(path)}: the server ended the connection on this probe, RCPT TO:${c.rcpt} (${(err as Error).message})`));
      p.destroy();
      dead = true;
    }
  }
  if (!dead) await p.quit();
  return items;
}

/** RFC 6409 §4.3: a submission server refuses MAIL until the client has authenticated. */
export async function submissionNeedsAuth(p: Probe, domain: string): Promise<CheckItem> {
  const fix =
    "Postern: submission listeners always require AUTH; Postfix: -o smtpd_client_restrictions=permit_sasl_authenticated,reject on the submission service";
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
    if (confirms(known) && !confirms(unknown))
      items.push(item(id, "FAIL", `${verb} tells users apart (${known.code} vs ${unknown.code}): address harvesting`, fix));
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
