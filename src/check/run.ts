/**
 * `postern check`: runs every probe against one server and collects the verdicts. Each probe
 * uses its own connection where an earlier one could have changed the server's state (errors
 * counted, connection closed on bare LF).
 */
import { normaliseDomain } from "../base/domain.js";
import { SmtpClient, SmtpClientError } from "../delivery/smtp-client.js";
import { parseEhloReply, describeReply, type PeerCapabilities } from "../delivery/smtp-reply.js";
import { Probe, sni } from "./probe.js";
import { authBeforeTls, bareLf, extensionItems, mechanismItem, relayProbe, submissionNeedsAuth, vrfyExpn, type RelayPath } from "./smtp-probes.js";
import { checkImplicitTls, checkSessionAndCertificate, checkSubmissionCiphers, checkTlsVersions, tlsSession } from "./tls-probes.js";
import { item, type CheckItem, type CheckTarget } from "./types.js";

/** Guess a mail domain from the server's name: mail.example.org → example.org. */
export function domainFromHostname(name: string): string {
  const labels = normaliseDomain(name).split(".");
  return labels.length >= 3 ? labels.slice(1).join(".") : labels.join(".");
}

export async function runCheck(t: CheckTarget): Promise<CheckItem[]> {
  const items: CheckItem[] = [];
  const implicit = t.mode === "submissions";
  const tlsOpts = { rejectUnauthorized: false, servername: sni(t.servername), ...(t.ca ? { ca: t.ca } : {}) };
  /** A fresh connection past greeting and EHLO. */
  const open = async (): Promise<{ p: Probe; caps: PeerCapabilities; name: string }> => {
    const p = await Probe.open(t.host, t.port, t.timeoutMs, implicit ? tlsOpts : undefined);
    const greeting = await p.reply();
    if (greeting.code !== 220) throw new Error(`greeting ${describeReply(greeting)}`);
    const ehlo = await p.ehlo(t.ehlo);
    if (ehlo.code !== 250) throw new Error(`EHLO ${describeReply(ehlo)}`);
    return { p, caps: parseEhloReply(ehlo), name: ehlo.lines[0]?.split(" ")[0] ?? t.host };
  };

  // 1. Greeting and EHLO on the first connection, then what is exposed before TLS.
  let first: Probe;
  try {
    first = await Probe.open(t.host, t.port, t.timeoutMs, implicit ? tlsOpts : undefined);
  } catch (err) {
    return [item("connect", "FAIL", `cannot connect to ${t.host}:${t.port}${implicit ? " with TLS" : ""}: ${(err as Error).message}`)];
  }
  let caps: PeerCapabilities;
  let domain: string;
  try {
    const greeting = await first.reply();
    if (greeting.code !== 220) {
      first.destroy();
      return [item("greeting", "FAIL", `greeting ${describeReply(greeting)} (RFC 5321 §4.3.1 expects 220)`)];
    }
    items.push(item("greeting", "PASS", describeReply(greeting).slice(0, 160)));
    const ehlo = await first.ehlo(t.ehlo);
    if (ehlo.code !== 250) {
      first.destroy();
      return [...items, item("ehlo", "FAIL", `EHLO refused: ${describeReply(ehlo)}`)];
    }
    caps = parseEhloReply(ehlo);
    items.push(item("ehlo", "PASS", `extensions: ${[...caps.keywords.keys()].join(" ") || "none"}`));
    items.push(...extensionItems(caps, t));
    domain = t.domain ?? domainFromHostname(ehlo.lines[0]?.split(" ")[0] ?? t.host);
    items.push(item("domain", "INFO", `probing with local domain ${domain}${t.domain ? "" : " (guessed from the EHLO name; --domain to set it)"}`));
    if (!implicit) items.push(await authBeforeTls(first, caps));
    items.push(...(await vrfyExpn(first, domain)));
    await first.quit();
  } catch (err) {
    first.destroy();
    return [...items, item("dialogue", "FAIL", `the server broke the dialogue: ${(err as Error).message}`)];
  }

  // 2. TLS: the session a default client gets, the certificate, AUTH and submission rules after TLS.
  if (implicit || caps.starttls) {
    try {
      const s = await tlsSession(t, implicit, t.port, {});
      if (!s) items.push(item("starttls-works", "FAIL", "STARTTLS offered but refused when asked"));
      else {
        items.push(...checkSessionAndCertificate(t, s.tlsSocket));
        if (implicit) await s.reply(); // the greeting comes after the handshake
        const ehlo = await s.ehlo(t.ehlo);
        const after = parseEhloReply(ehlo);
        items.push(mechanismItem(after, t));
        if (t.mode !== "mta") items.push(await submissionNeedsAuth(s, domain));
        await s.quit();
      }
    } catch (err) {
      items.push(item("tls-handshake", "FAIL", `TLS handshake failed: ${(err as Error).message}`));
    }
    items.push(...(await checkTlsVersions(t, implicit)));
    if (t.mode !== "mta") items.push(await checkSubmissionCiphers(t, implicit));
  }
  let submissionsReached = false;
  if (implicit) items.push(item("implicit-tls", "PASS", `port ${t.port} speaks SMTP over implicit TLS`));
  else if (t.submissionsPort !== undefined) {
    const implicitTls = await checkImplicitTls(t, t.submissionsPort);
    items.push(implicitTls.item);
    submissionsReached = implicitTls.reached;
    if (submissionsReached) {
      // The submissions port is a submission port too: the same protocol and cipher probes.
      items.push(...(await checkTlsVersions(t, true, t.submissionsPort, "submissions-")));
      items.push(await checkSubmissionCiphers(t, true, t.submissionsPort, "submissions-"));
    }
  } else items.push(item("implicit-tls", "NOT TESTED", "give --submissions-port to check implicit TLS (RFC 8314)"));

  // 3. Open relay, without credentials and without DATA, by every way in an attacker has: in
  // clear, after STARTTLS (a server may demand TLS before MAIL and then relay for anyone), and
  // over implicit TLS on the submissions port.
  const paths: RelayPath[] = implicit
    ? [{ name: "implicit TLS", port: t.port }]
    : [
        { name: "clear", port: t.port },
        { name: "STARTTLS", port: t.port },
      ];
  if (submissionsReached && t.submissionsPort !== undefined) paths.push({ name: "implicit TLS", port: t.submissionsPort });
  for (const path of paths) items.push(...(await relayProbe(t, domain, path)));

  // 4. Bare LF, on its own connection: a strict server closes it.
  try {
    const { p } = await open();
    items.push(await bareLf(p));
    p.destroy();
  } catch (err) {
    items.push(item("bare-lf", "NOT TESTED", (err as Error).message));
  }

  // 5. Optional login with real credentials, only over TLS.
  if (t.login) items.push(await loginTest(t));
  return items;
}

async function loginTest(t: CheckTarget): Promise<CheckItem> {
  let client: SmtpClient | undefined;
  try {
    client = await SmtpClient.connect({
      host: t.host,
      port: t.port,
      tls: t.mode === "submissions" ? "implicit" : "starttls-required",
      heloName: t.ehlo,
      servername: t.servername,
      rejectUnauthorized: false,
      timeoutMs: t.timeoutMs,
    });
    await client.auth("auto", { username: t.login!.username, password: t.login!.password });
    return item("login", "PASS", `authenticated as ${t.login!.username}`);
  } catch (err) {
    const why = err instanceof SmtpClientError ? err.message : String(err);
    return item("login", "FAIL", `login as ${t.login!.username} failed: ${why}`);
  } finally {
    await client?.quit();
  }
}
