/**
 * Small real SMTP servers for `postern check` to audit, built on nodemailer's smtp-server: a
 * correct MTA, open relays of several kinds, and submission servers with chosen TLS settings.
 * They receive for example.org (postmaster@example.org exists) and listen on 127.0.0.1 only.
 */
import { SMTPServer, type SMTPServerOptions } from "smtp-server";
import type { TLSSocket } from "node:tls";
import { testCert } from "../delivery/helpers/tls-cert.js";

export interface DoubleOptions {
  /** Whether a recipient outside example.org is accepted; `secure` is true after STARTTLS or on implicit TLS. */
  relays?: (address: string, secure: boolean) => boolean;
  /** MAIL in clear gets `530 5.7.0 Must issue a STARTTLS command first` (RFC 3207 §4). */
  tlsBeforeMail?: boolean;
  /** STARTTLS works but EHLO does not list it. */
  hideStarttls?: boolean;
  /** Implicit TLS (port 465 style) instead of STARTTLS. */
  implicit?: boolean;
  /** Submission: MAIL needs AUTH (smtp-server's default); else an MTA taking mail without AUTH. */
  submission?: boolean;
  /** TLS settings passed to the server (ciphers, minVersion...); TLS ≥ 1.2 with Node's defaults otherwise. */
  tls?: Pick<SMTPServerOptions, "ciphers" | "minVersion" | "maxVersion">;
}

export interface SmtpDouble {
  port: number;
  /** Every RCPT address the server was asked about, with the TLS state it was asked in. */
  rcpts: { address: string; secure: boolean }[];
  /** The cipher of every TLS session the server completed. */
  ciphers: string[];
  close(): Promise<void>;
}

const refuse = (code: number, text: string): Error => Object.assign(new Error(text), { responseCode: code });

export async function startDouble(o: DoubleOptions = {}): Promise<SmtpDouble> {
  const { key, cert } = await testCert();
  const rcpts: SmtpDouble["rcpts"] = [];
  const ciphers: string[] = [];
  const server = new SMTPServer({
    key,
    cert,
    minVersion: "TLSv1.2", // smtp-server's own default is TLSv1
    ...o.tls,
    secure: o.implicit === true,
    hideSTARTTLS: o.hideStarttls === true,
    name: "mail.example.org",
    logger: false,
    authOptional: o.submission !== true,
    // AUTH only on a submission server and only over TLS (smtp-server would offer it in clear).
    onConnect(session, callback) {
      session.disabledCommands = o.submission && o.implicit ? [] : ["AUTH"];
      callback();
    },
    onSecure(socket, session, callback) {
      ciphers.push((socket as TLSSocket).getCipher()?.name ?? "?");
      session.disabledCommands = o.submission ? [] : ["AUTH"];
      callback();
    },
    onAuth(_auth, _session, callback) {
      callback(refuse(535, "5.7.8 Authentication failed"));
    },
    onMailFrom(_address, session, callback) {
      if (o.tlsBeforeMail && !session.secure) return callback(refuse(530, "5.7.0 Must issue a STARTTLS command first"));
      if (o.submission && !session.user) return callback(refuse(530, "5.7.0 Authentication required")); // RFC 6409 §4.3
      callback();
    },
    onRcptTo(address, session, callback) {
      rcpts.push({ address: address.address, secure: session.secure });
      const a = address.address.toLowerCase();
      if (a === "postmaster@example.org") return callback();
      if (o.relays?.(a, session.secure)) return callback();
      callback(refuse(554, "5.7.1 Relay access denied"));
    },
    onData(stream, _session, callback) {
      stream.resume();
      stream.on("end", () => callback(refuse(554, "5.7.1 Not taking messages in this test")));
    },
  });
  // Failed handshakes (the check's TLS 1.0 and CBC probes) are reported here; they are expected.
  server.on("error", () => undefined);
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", () => ok()));
  const address = server.server.address();
  if (!address || typeof address === "string") throw new Error("no port");
  return {
    port: address.port,
    rcpts,
    ciphers,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}
