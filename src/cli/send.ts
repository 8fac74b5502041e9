/**
 * `postern send`: a swaks-style test client on our own SMTP client and SASL mechanisms.
 * Prints the transcript (AUTH payloads masked unless --show-secrets) and exits with swaks's
 * codes, so scripts written for swaks keep working:
 *   0 sent · 1 bad options · 2 cannot connect · 21 greeting refused · 22 EHLO/HELO refused ·
 *   23 MAIL refused · 24 no RCPT accepted · 25 DATA refused · 26 message refused after the data ·
 *   28 AUTH failed · 29 TLS failed (or STARTTLS not offered)
 */
import { readFileSync } from "node:fs";
import { hostname as osHostname } from "node:os";
import { Readable } from "node:stream";
import { SmtpClient, SmtpClientError, type SmtpTlsMode } from "../delivery/smtp-client.js";
import { composeMessage } from "./send-message.js";
import { readPassword } from "./secret-input.js";

export const SEND_EXIT = { ok: 0, usage: 1, connect: 2, greeting: 21, ehlo: 22, mail: 23, rcpt: 24, data: 25, dataEnd: 26, auth: 28, tls: 29 } as const;

export interface SendOptions {
  server?: string;
  tls?: string;
  auth?: string;
  user?: string;
  passwordStdin?: boolean;
  from?: string;
  to?: string[];
  header?: string[];
  subject?: string;
  body?: string;
  bodyFile?: string;
  attach?: string[];
  ehlo?: string;
  insecure?: boolean;
  ca?: string;
  servername?: string;
  showSecrets?: boolean;
  timeout?: string;
}

class UsageError extends Error {}

/** "host", "host:port", "[v6]:port"; the default port follows the TLS mode (RFC 8314: 465 implicit). */
export function parseServer(text: string, tls: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s]+))(?::(\d{1,5}))?$/.exec(text);
  if (!m) throw new UsageError(`--server: expected host[:port], got ${JSON.stringify(text)}`);
  const port = m[3] ? Number(m[3]) : tls === "implicit" ? 465 : 587;
  if (port < 1 || port > 65535) throw new UsageError(`--server: bad port ${m[3]}`);
  return { host: m[1] ?? m[2]!, port };
}

function tlsMode(tls: string): SmtpTlsMode {
  if (tls === "starttls") return "starttls-required";
  if (tls === "implicit" || tls === "none") return tls;
  throw new UsageError(`--tls: expected starttls, implicit or none, got ${JSON.stringify(tls)}`);
}

async function password(opts: SendOptions): Promise<string> {
  const env = process.env.POSTERN_PASSWORD;
  if (env !== undefined && env !== "") return env;
  // Without a terminal, stdin is read instead; empty (closed, /dev/null, cron) means no password
  // was given: refuse rather than send an empty one.
  const secret = await readPassword({ fromStdin: opts.passwordStdin === true, prompt: `Password for ${opts.user}: ` });
  if (secret === "") {
    const why = process.stdin.isTTY && opts.passwordStdin !== true ? "empty password" : "no password (no terminal to prompt on, and stdin was empty)";
    throw new UsageError(`--user ${opts.user}: ${why}; set $POSTERN_PASSWORD or pipe it with --password-stdin`);
  }
  return secret;
}

/** OpenSSL's certificate verification results (X509_V_ERR_*), as Node reports them in err.code. */
const CERT_CODES =
  /CERT|SELF_SIGNED|UNABLE_TO_(GET_ISSUER|VERIFY|DECRYPT|DECODE)|INVALID_CA|INVALID_PURPOSE|PATH_LENGTH|CHAIN_TOO_LONG|HOSTNAME|ALTNAME|IP_ADDRESS_MISMATCH/;

/** A TLS failure: the handshake or the certificate check (Node's codes; some lack "CERT"). */
export function tlsFailure(err: SmtpClientError): { certificate: boolean; code?: string } | null {
  const code = (err.cause as NodeJS.ErrnoException | undefined)?.code;
  const certificate = typeof code === "string" && CERT_CODES.test(code);
  if (err.kind === "tls" || certificate || (typeof code === "string" && code.startsWith("ERR_SSL"))) return { certificate, code };
  return null;
}

/** What to try when the server's certificate did not verify. */
export function certificateHint(code: string | undefined): string {
  if (code !== undefined && /HOSTNAME|ALTNAME|IP_ADDRESS_MISMATCH/.test(code)) {
    return "*** the certificate does not name the host you connected to: give the name it carries with --servername NAME (or -k to skip the check, for tests only)";
  }
  return "*** the server's certificate did not verify: --ca FILE to trust its (private) CA, --servername NAME if it is issued to another name, or -k to skip the check (for tests only)";
}

/** Maps a failure during connect() to the stage it happened in. */
function connectStage(err: SmtpClientError): number {
  if (tlsFailure(err)) return SEND_EXIT.tls;
  if (err.kind === "reply") return /^greeting/.test(err.message) ? SEND_EXIT.greeting : SEND_EXIT.ehlo;
  return SEND_EXIT.connect;
}

export async function runSend(opts: SendOptions, out: (line: string) => void): Promise<number> {
  let client: SmtpClient | undefined;
  try {
    const tls = opts.tls ?? "starttls";
    const mode = tlsMode(tls);
    if (!opts.server) throw new UsageError("--server host[:port] is required");
    if (!opts.from || !opts.to || opts.to.length === 0) throw new UsageError("--from and at least one --to are required");
    if (opts.body !== undefined && opts.bodyFile !== undefined) throw new UsageError("--body and --body-file exclude each other");
    if (opts.auth && !opts.user) throw new UsageError("--auth needs --user");
    const target = parseServer(opts.server, tls);
    let ca: Buffer | undefined;
    try {
      ca = opts.ca ? readFileSync(opts.ca) : undefined;
    } catch (err) {
      throw new UsageError(`--ca: cannot read ${opts.ca}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    const secret = opts.user ? await password(opts) : undefined;
    const body =
      opts.bodyFile !== undefined
        ? readFileSync(opts.bodyFile === "-" ? 0 : opts.bodyFile, "utf8")
        : (opts.body ?? "This is a test message sent by postern send.");
    const heloName = opts.ehlo ?? osHostname();
    // Each command paired with its reply code, in order (the greeting has no command), to tell
    // which stage refused when MAIL and RCPT were pipelined.
    const dialogue: { verb: string; code?: number }[] = [];
    let replies = 0;
    const record = (dir: "C" | "S", line: string) => {
      if (dir === "C") dialogue.push({ verb: line.split(" ", 1)[0]!.toUpperCase() });
      else if (line[3] !== "-" && replies++ > 0) {
        const open = dialogue.find((e) => e.code === undefined);
        if (open) open.code = Number(line.slice(0, 3));
      }
    };
    const message = composeMessage({
      from: opts.from,
      to: opts.to,
      subject: opts.subject,
      headers: opts.header,
      body,
      attachments: opts.attach,
      hostname: heloName,
    });

    try {
      client = await SmtpClient.connect({
        host: target.host,
        port: target.port,
        tls: mode,
        heloName,
        servername: opts.servername,
        rejectUnauthorized: opts.insecure !== true,
        ca: ca,
        timeoutMs: opts.timeout ? Number(opts.timeout) * 1000 : 30_000,
        // The user chose --tls none: AUTH then crosses in clear, which they asked for.
        allowPlaintextAuth: mode === "none",
        showSecrets: opts.showSecrets === true,
        onTranscript: (dir, line) => {
          out(`${dir === "C" ? "->" : "<-"} ${line}`);
          record(dir, line);
        },
      });
    } catch (err) {
      if (err instanceof SmtpClientError) {
        const failure = tlsFailure(err);
        out(`*** ${failure ? `TLS failed: ` : ""}${err.message}${failure?.code ? ` (${failure.code})` : ""}`);
        if (failure?.certificate) out(certificateHint(failure.code));
        return connectStage(err);
      }
      throw err;
    }
    if (opts.user) {
      if (!client.secure) out("*** warning: AUTH over an unencrypted connection; the password crosses in clear");
      try {
        await client.auth(opts.auth ?? "auto", { username: opts.user, password: secret!, authzid: undefined });
      } catch (err) {
        if (!(err instanceof SmtpClientError)) throw err;
        out(`*** ${err.message}`);
        return SEND_EXIT.auth;
      }
    }
    const result = await client.sendMail({
      from: opts.from,
      to: opts.to.map((address) => ({ address })),
      size: message.length,
      message: Readable.from([message]),
    });
    const refused = result.recipients.filter((r) => r.outcome !== "delivered");
    if (result.dataReply === undefined) {
      out(`*** not sent: ${refused[0]?.detail ?? "no recipient accepted"}`);
      const code = (verb: string) => dialogue.find((e) => e.verb === verb)?.code;
      if ((code("MAIL") ?? 0) >= 400) return SEND_EXIT.mail;
      if (!dialogue.some((e) => e.verb === "RCPT" && e.code !== undefined && e.code < 300)) return SEND_EXIT.rcpt;
      return SEND_EXIT.data;
    }
    await client.quit();
    client = undefined;
    if (result.dataReply.code >= 300) return SEND_EXIT.dataEnd;
    for (const r of refused) out(`*** ${r.address} refused: ${r.detail}`);
    return SEND_EXIT.ok;
  } catch (err) {
    if (err instanceof UsageError) {
      out(`*** ${err.message}`);
      return SEND_EXIT.usage;
    }
    if (err instanceof SmtpClientError) {
      out(`*** ${err.message}`);
      return SEND_EXIT.connect;
    }
    throw err;
  } finally {
    if (client) await client.quit();
  }
}

export async function sendCommand(opts: SendOptions): Promise<void> {
  const code = await runSend(opts, (line) => process.stdout.write(line + "\n"));
  process.exitCode = code;
}
