/**
 * The admin's toolbox commands (auth-string, send, check, sendmail), registered on the main
 * program from here so main.ts stays a short list.
 */
import type { Command } from "commander";
import { authStringCommand } from "./auth-string.js";
import { sendCommand } from "./send.js";
import { checkCommand } from "./check.js";
import { sendmailCommand } from "./sendmail.js";

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function registerToolbox(program: Command): void {
  program
    .command("auth-string [user]")
    .description("print the AUTH PLAIN and AUTH LOGIN strings for a user (password from a prompt or stdin)")
    .option("--authzid <identity>", "PLAIN authorization identity (act as this user)")
    .option("--password-stdin", "read the password from stdin")
    .option("--decode <string>", "show what a captured base64 AUTH string contains (NUL shown as \\0)")
    .action(authStringCommand);

  program
    .command("send")
    .description("send a test message through any SMTP server and print the transcript (swaks-style)")
    .requiredOption("-s, --server <host[:port]>", "server to talk to (default port 587, or 465 with --tls implicit)")
    .option("--tls <mode>", "starttls | implicit | none", "starttls")
    .option("-a, --auth <mechanism>", "PLAIN | LOGIN | CRAM-MD5 | SCRAM-SHA-256 | SCRAM-SHA-256-PLUS | auto (default auto when --user is given)")
    .option("-u, --user <name>", "authenticate as this user (password: $POSTERN_PASSWORD, stdin, or a prompt)")
    .option("--password-stdin", "read the password from stdin")
    .requiredOption("-f, --from <address>", "envelope sender and From:")
    .requiredOption("-t, --to <address>", "recipient (repeatable)", collect)
    .option("--header <line>", 'extra header "Name: value" (repeatable; replaces a default of that name)', collect)
    .option("--subject <text>", "Subject:")
    .option("--body <text>", "message text")
    .option("--body-file <file>", "message text from a file (- for stdin)")
    .option("--attach <file>", "attach a file (repeatable)", collect)
    .option("--ehlo <name>", "name to send in EHLO (default: this host's name)")
    .option("--servername <name>", "name the certificate must match (default: the server host)")
    .option("--ca <file>", "trust this CA (PEM) for the server's certificate")
    .option("-k, --insecure", "do not verify the server's certificate")
    .option("--show-secrets", "show the AUTH exchange unmasked in the transcript")
    .option("--timeout <seconds>", "deadline for each reply", "30")
    .action(sendCommand);

  program
    .command("check <host[:port]>")
    .description("audit an SMTP server: TLS, AUTH exposure, open relay, user enumeration, bare LF")
    .option("--json", "machine-readable output")
    .option("--mode <mode>", "mta | submission | submissions (default from the port: 465 submissions, 587 submission, else mta)")
    .option("--domain <domain>", "a domain the server receives mail for (default: its host name minus the first label)")
    .option("--relay-to <address>", "foreign recipient for the open-relay probe", "relay-probe@example.com")
    .option("--ehlo <name>", "name to send in EHLO", "postern-check.invalid")
    .option("--servername <name>", "name the certificate must match (default: the host)")
    .option("--ca <file>", "trust this CA (PEM) when checking the certificate chain")
    .option("--submissions-port <port>", "also check implicit TLS on this port (default 465 when checking port 25 or 587)")
    .option("-u, --user <name>", "also test a login (password: $POSTERN_PASSWORD, stdin, or a prompt)")
    .option("--password-stdin", "read the password from stdin")
    .option("--timeout <seconds>", "deadline for each reply", "10")
    .option("--dns", "the argument is a DOMAIN: check its MX, SPF, DKIM (against the local keys) and DMARC records")
    .option("--ip <address>", "with --dns: SPF must allow this address (repeatable; default dns.ownAddresses)", collect)
    .option("--dns-server <host:port>", "with --dns: ask this resolver (repeatable; default dns.servers, else the system's)", collect)
    .option("--selector <name>", "with --dns: also look up this DKIM selector (repeatable)", collect)
    .option(
      "-c, --config <file>",
      "with --dns: read dns.* and the DKIM keys from this file (default: $POSTERN_CONFIG, else /etc/postern/postern.yaml if it exists)",
    )
    .action(checkCommand);

  program
    .command("sendmail [recipients...]")
    .description("sendmail-compatible local injector: message on stdin, into the local queue via the local socket")
    .option("-t", "take recipients from To:, Cc: and Bcc: (Bcc: is removed)")
    .option("-f <sender>", "envelope sender")
    .option("-F <name>", "full name for a From: header the message lacks")
    .option("-i", "a line with a single dot does not end the message (also -oi)")
    .option("-c, --config <file>", "read localSubmit.socket (only that) from this file (default: $POSTERN_CONFIG, else /etc/postern/postern.yaml)")
    .option("--socket <path>", "local submission socket (or $POSTERN_SOCKET); then no configuration is read")
    .action(sendmailCommand);
}

/**
 * sendmail's own option spelling: "-oi" means -i, other "-o..." and "-B..." options are accepted
 * and ignored (as Postfix's sendmail does), and a program invoked as "sendmail" runs that command.
 */
export function normalizeArgv(argv: string[]): string[] {
  const [node, script, ...rest] = argv;
  const invokedAs = (script ?? "").split("/").pop();
  const args = invokedAs === "sendmail" ? ["sendmail", ...rest] : rest;
  if (args[0] !== "sendmail") return argv;
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      out.push(...args.slice(i));
      break;
    }
    if (a === "-oi" || a === "-i") out.push("-i");
    else if (/^-[oBNRV]./.test(a) || a === "-bm") continue;
    else out.push(a);
  }
  return [node!, script!, ...out];
}
