/**
 * Postern's outbound SMTP client (smarthost relay, MX delivery, `postern send`).
 *
 * connect(): greeting → EHLO (HELO fallback, RFC 5321 §3.2) → STARTTLS per policy (RFC 3207) →
 * EHLO again. sendMail(): MAIL, RCPTs and DATA in one write under PIPELINING (RFC 2920 §3.1), ESMTP
 * parameters only when offered (SIZE RFC 1870, BODY RFC 6152, SMTPUTF8 RFC 6531, DSN RFC 3461),
 * then the message with CRLF enforcement and dot-stuffing (data-encoder.ts, SECURITY rule 1).
 */
import { connect as netConnect } from "node:net";
import type { Readable } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import type { DsnNotify, RecipientResult } from "../queue/types.js";
import { createClientMechanism } from "../sasl/index.js";
import type { SaslClientCredentials } from "../sasl/types.js";
import { decodeBase64Strict } from "../smtp/base64.js";
import { encodeXtext } from "../smtp/xtext.js";
import { clientTlsOptions, SmtpClientError, SmtpConnection, type TlsParams } from "./smtp-connection.js";
import { describeReply, noCapabilities, parseEhloReply, type PeerCapabilities, type SmtpReply } from "./smtp-reply.js";

export { SmtpClientError } from "./smtp-connection.js";
export type { SmtpErrorKind } from "./smtp-connection.js";
export { describeReply } from "./smtp-reply.js";
export type { PeerCapabilities, SmtpReply } from "./smtp-reply.js";

export type SmtpTlsMode = "none" | "starttls-opportunistic" | "starttls-required" | "implicit";

export interface SmtpConnectOptions extends TlsParams {
  host: string;
  port: number;
  tls: SmtpTlsMode;
  /** Our name in EHLO/HELO. */
  heloName: string;
  /** Deadline for each command's reply, connecting and each write (default 5 min, RFC 5321 §4.5.3.2). */
  timeoutMs?: number;
  /** Deadline for the reply to the final "." (default 10 min, RFC 5321 §4.5.3.2.6). */
  dataTimeoutMs?: number;
  /** Permit AUTH over an unencrypted connection (tests, localhost relays). Default false. */
  allowPlaintextAuth?: boolean;
  /** Every line sent and received; AUTH payloads and message data are not shown. */
  onTranscript?: (dir: "C" | "S", line: string) => void;
  /** Show AUTH payloads in the transcript instead of "<credentials>" (`postern send --show-secrets`). */
  showSecrets?: boolean;
}

export interface MailRecipient {
  address: string;
  notify?: DsnNotify[];
  orcpt?: { addrType: string; address: string };
}

export interface SendMailOptions {
  from: string;
  to: MailRecipient[];
  /** Message size in octets, for SIZE= and the early refusal (RFC 1870). */
  size?: number;
  body8bit?: boolean;
  smtputf8?: boolean;
  ret?: "FULL" | "HDRS";
  envid?: string;
  /** RFC 8689 §4.2.1: MAIL FROM carries REQUIRETLS (the caller checked the peer offers it). */
  requireTls?: boolean;
  /** The message; consumed, or destroyed when it is not sent. */
  message: Readable;
}

export interface SendMailResult {
  /** One per recipient in `to`, in order. */
  recipients: RecipientResult[];
  /** The reply after the final "." (absent when DATA was not reached). */
  dataReply?: SmtpReply;
}

/** "auto" picks the first of these that both sides support. */
export const AUTO_MECHANISMS = ["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"] as const;

const NOTIFY_VALUES = new Set<string>(["NEVER", "SUCCESS", "FAILURE", "DELAY"]);

/** 2xx delivered, 5xx failed, anything else deferred. */
export function outcomeOfCode(code: number): RecipientResult["outcome"] {
  if (code >= 200 && code < 300) return "delivered";
  return code >= 500 && code < 600 ? "failed" : "deferred";
}

/** A path goes between "<" and ">" on our command line: refuse what could end it or the line. */
export function isSafePath(address: string): boolean {
  return !/[\x00-\x1f\x7f<>]/.test(address);
}

function assertSafePath(address: string): void {
  if (!isSafePath(address)) {
    throw new SmtpClientError("policy", `refusing unsafe address ${JSON.stringify(address)}`);
  }
}

export class SmtpClient {
  capabilities: PeerCapabilities = noCapabilities();
  private readonly timeoutMs: number;
  private readonly dataTimeoutMs: number;

  private constructor(
    private readonly conn: SmtpConnection,
    private readonly opts: SmtpConnectOptions,
    readonly greeting: SmtpReply,
  ) {
    this.timeoutMs = opts.timeoutMs ?? 300_000;
    this.dataTimeoutMs = opts.dataTimeoutMs ?? 600_000;
  }

  static async connect(opts: SmtpConnectOptions): Promise<SmtpClient> {
    const timeoutMs = opts.timeoutMs ?? 300_000;
    const implicit = opts.tls === "implicit";
    const socket = implicit ? tlsConnect({ ...clientTlsOptions(opts, opts.host), port: opts.port }) : netConnect({ host: opts.host, port: opts.port });
    const conn = new SmtpConnection(socket, implicit, opts.onTranscript);
    try {
      await conn.established(timeoutMs);
      if (implicit) conn.checkPeer(opts.verifyPeer);
      const greeting = await conn.readReply(timeoutMs, "greeting");
      if (greeting.code !== 220) throw new SmtpClientError("reply", `greeting: ${describeReply(greeting)}`, greeting);
      const client = new SmtpClient(conn, opts, greeting);
      await client.hello();
      await client.negotiateTls();
      return client;
    } catch (err) {
      conn.abandon();
      throw err;
    }
  }

  /** Replies received on this session so far (SmtpPool: did a reused session answer anything?). */
  get repliesReceived(): number {
    return this.conn.received;
  }

  /** False once the session was dropped (a broken connection, or a 354 we had to walk away from). */
  get usable(): boolean {
    return this.conn.usable;
  }

  /** True once the session runs over TLS (implicit or after STARTTLS). */
  get secure(): boolean {
    return this.conn.secure;
  }

  /** Authenticates with a SASL client mechanism (RFC 4954). "auto" picks the best offered. */
  async auth(mechanism: string, creds: SaslClientCredentials): Promise<void> {
    // Credentials never cross the network in clear unless the caller explicitly allows it.
    if (!this.secure && !this.opts.allowPlaintextAuth) {
      throw new SmtpClientError("policy", "refusing AUTH over an unencrypted connection");
    }
    const offered = this.capabilities.auth;
    const name = mechanism === "auto" ? AUTO_MECHANISMS.find((m) => offered.includes(m)) : mechanism.toUpperCase();
    if (!name) {
      throw new SmtpClientError("policy", `no usable AUTH mechanism offered (server offers: ${offered.join(" ") || "none"})`);
    }
    // SCRAM -PLUS binds to this TLS connection; plain SCRAM gets the binding only to say "y" (we
    // could bind) when the server did not offer -PLUS (RFC 5802 §6 downgrade detection).
    const binding = name.endsWith("-PLUS") || !offered.includes(`${name}-PLUS`) ? { channelBinding: () => this.conn.channelBinding() } : {};
    const mech = createClientMechanism(name, creds, { serverHostname: this.opts.servername ?? this.opts.host, ...binding });
    if (!mech) throw new SmtpClientError("policy", `AUTH mechanism ${name} is not implemented`);
    let initial: Buffer | null;
    try {
      initial = mech.initial();
    } catch (err) {
      throw new SmtpClientError("policy", `AUTH ${name}: ${(err as Error).message}`);
    }
    // RFC 4954 §4: "=" stands for an empty initial response.
    let ir = initial === null ? "" : " " + (initial.length === 0 ? "=" : initial.toString("base64"));
    // RFC 4954 §4: a command that would pass 512 octets (a bearer token) goes without the initial
    // response, which then answers the server's empty challenge.
    let deferred: Buffer | null = null;
    if (`AUTH ${name}${ir}\r\n`.length > 512) [deferred, ir] = [initial, ""];
    this.conn.send(`AUTH ${name}${ir}`, this.opts.showSecrets ? undefined : `AUTH ${name}${ir ? " <credentials>" : ""}`);
    for (let round = 0; round < 10; round++) {
      const reply = await this.conn.readReply(this.timeoutMs, "AUTH");
      if (reply.code === 235) return;
      if (reply.code !== 334) throw new SmtpClientError("reply", `AUTH ${name}: ${describeReply(reply)}`, reply);
      const challenge = decodeBase64Strict(reply.lines[0]?.trim() ?? "");
      let response: Buffer;
      try {
        if (!challenge) throw new Error("server challenge is not valid base64");
        response = deferred && challenge.length === 0 ? deferred : mech.respond(challenge);
        deferred = null;
      } catch (err) {
        // RFC 4954 §4: "*" cancels the exchange.
        this.conn.send("*");
        await this.conn.readReply(this.timeoutMs, "AUTH cancel").catch(() => undefined);
        throw new SmtpClientError("policy", `AUTH ${name}: ${(err as Error).message}`);
      }
      this.conn.send(response.toString("base64"), this.opts.showSecrets ? undefined : "<credentials>");
    }
    throw new SmtpClientError("protocol", `AUTH ${name}: too many challenges`);
  }

  /** Sends one message; per-recipient results come from the RCPT replies and the final reply. */
  async sendMail(mail: SendMailOptions): Promise<SendMailResult> {
    try {
      return await this.transaction(mail);
    } finally {
      if (!mail.message.readableEnded) mail.message.destroy();
    }
  }

  async rset(): Promise<SmtpReply> {
    const reply = await this.command("RSET", "RSET");
    if (reply.code !== 250) throw new SmtpClientError("reply", `RSET: ${describeReply(reply)}`, reply);
    return reply;
  }

  /** Says goodbye and closes; never throws. */
  async quit(): Promise<void> {
    try {
      await this.command("QUIT", "QUIT", Math.min(this.timeoutMs, 10_000));
    } catch {
      // the session is over either way
    }
    this.conn.end();
  }

  close(): void {
    this.conn.destroy();
  }

  private async command(line: string, stage: string, timeoutMs = this.timeoutMs): Promise<SmtpReply> {
    this.conn.send(line);
    return this.conn.readReply(timeoutMs, stage);
  }

  private async hello(): Promise<void> {
    const ehlo = await this.command(`EHLO ${this.opts.heloName}`, "EHLO");
    if (ehlo.code === 250) {
      this.capabilities = parseEhloReply(ehlo);
      return;
    }
    if (ehlo.code >= 500) {
      // RFC 5321 §3.2: a server without extensions rejects EHLO; retry with HELO.
      const helo = await this.command(`HELO ${this.opts.heloName}`, "HELO");
      if (helo.code === 250) {
        this.capabilities = noCapabilities();
        return;
      }
      throw new SmtpClientError("reply", `HELO: ${describeReply(helo)}`, helo);
    }
    throw new SmtpClientError("reply", `EHLO: ${describeReply(ehlo)}`, ehlo);
  }

  private async negotiateTls(): Promise<void> {
    const mode = this.opts.tls;
    if (mode !== "starttls-opportunistic" && mode !== "starttls-required") return;
    if (!this.capabilities.starttls) {
      if (mode === "starttls-required") {
        throw new SmtpClientError("tls", "STARTTLS required but not offered by the server", undefined, { cause: { code: "STARTTLS_NOT_OFFERED" } });
      }
      return; // opportunistic: carry on in clear
    }
    const reply = await this.command("STARTTLS", "STARTTLS");
    if (reply.code !== 220) {
      if (mode === "starttls-required") {
        throw new SmtpClientError("tls", `STARTTLS: ${describeReply(reply)}`, reply, { cause: { code: "STARTTLS_NOT_OFFERED" } });
      }
      return; // RFC 3207 §4: the session continues unencrypted
    }
    // Anything already received arrived in clear but would be read as if it came over TLS
    // (response injection, the inverse of CVE-2011-0411): refuse the session.
    if (!this.conn.inputEmpty) {
      throw new SmtpClientError("protocol", "server sent data after its STARTTLS reply, before the TLS handshake");
    }
    await this.conn.upgrade(this.opts, this.opts.host, this.timeoutMs);
    // RFC 3207 §4.2: discard what was learned before TLS and ask again.
    this.capabilities = noCapabilities();
    await this.hello();
  }

  private mailCommand(mail: SendMailOptions): string {
    assertSafePath(mail.from);
    const caps = this.capabilities;
    const params: string[] = [];
    if (caps.size && mail.size !== undefined) params.push(`SIZE=${Math.max(0, Math.floor(mail.size))}`);
    if (mail.body8bit && caps.eightBitMime) params.push("BODY=8BITMIME");
    if (mail.smtputf8 && caps.smtputf8) params.push("SMTPUTF8");
    if (mail.requireTls) {
      // RFC 8689 §4.2.1: only over TLS and only to a peer that offers it.
      if (!this.secure || !caps.requireTls) throw new SmtpClientError("policy", "550 5.7.30 REQUIRETLS support required");
      params.push("REQUIRETLS");
    }
    if (caps.dsn) {
      if (mail.ret) params.push(`RET=${mail.ret === "HDRS" ? "HDRS" : "FULL"}`);
      if (mail.envid) params.push(`ENVID=${encodeXtext(mail.envid)}`);
    }
    return [`MAIL FROM:<${mail.from}>`, ...params].join(" ");
  }

  private rcptCommand(rcpt: MailRecipient): string {
    assertSafePath(rcpt.address);
    const params: string[] = [];
    // RFC 3461 §4.1, §4.2: only to a server that offers DSN.
    if (this.capabilities.dsn) {
      const notify = (rcpt.notify ?? []).filter((n) => NOTIFY_VALUES.has(n));
      if (notify.length > 0) params.push(`NOTIFY=${notify.includes("NEVER") ? "NEVER" : notify.join(",")}`);
      if (rcpt.orcpt && /^[A-Za-z0-9-]{1,64}$/.test(rcpt.orcpt.addrType)) {
        params.push(`ORCPT=${rcpt.orcpt.addrType};${encodeXtext(rcpt.orcpt.address)}`);
      }
    }
    return [`RCPT TO:<${rcpt.address}>`, ...params].join(" ");
  }

  private async transaction(mail: SendMailOptions): Promise<SendMailResult> {
    const everyone = (outcome: RecipientResult["outcome"], detail: string): SendMailResult => ({
      recipients: mail.to.map((r) => ({ address: r.address, outcome, detail })),
    });
    const caps = this.capabilities;
    // RFC 1870 §6: do not send what the peer has declared too large; it is a permanent failure.
    if (caps.sizeLimit !== undefined && mail.size !== undefined && mail.size > caps.sizeLimit) {
      return everyone("failed", `552 5.3.4 message size ${mail.size} exceeds the peer's limit of ${caps.sizeLimit}`);
    }
    // RFC 6531 §3.4: an SMTPUTF8 message cannot go to a server without SMTPUTF8.
    if (mail.smtputf8 && !caps.smtputf8) {
      return everyone("failed", "553 5.6.7 the peer does not support SMTPUTF8");
    }
    if (mail.to.length === 0) return { recipients: [] };

    const mailLine = this.mailCommand(mail);
    const rcptLines = mail.to.map((r) => this.rcptCommand(r));
    const dataTimeoutMs = Math.min(this.timeoutMs, 120_000);
    let mailReply: SmtpReply;
    const rcptReplies: SmtpReply[] = [];
    let dataStart: SmtpReply | undefined;
    if (caps.pipelining) {
      // RFC 2920 §3.1: DATA may be the last command of a group; every reply is read, in order.
      // One write and one round trip to the 354; the message itself still waits for a 354 and
      // at least one accepted RCPT.
      this.conn.sendGroup([mailLine, ...rcptLines, "DATA"]);
      mailReply = await this.conn.readReply(this.timeoutMs, "MAIL");
      for (let i = 0; i < rcptLines.length; i++) rcptReplies.push(await this.conn.readReply(this.timeoutMs, "RCPT"));
      dataStart = await this.conn.readReply(dataTimeoutMs, "DATA");
    } else {
      mailReply = await this.command(mailLine, "MAIL");
      if (outcomeOfCode(mailReply.code) === "delivered") {
        for (const line of rcptLines) rcptReplies.push(await this.command(line, "RCPT"));
      }
    }
    const mailAccepted = outcomeOfCode(mailReply.code) === "delivered";
    const recipients: RecipientResult[] = mailAccepted
      ? mail.to.map((r, i) => ({ address: r.address, outcome: outcomeOfCode(rcptReplies[i].code), detail: describeReply(rcptReplies[i]) }))
      : everyone(outcomeOfCode(mailReply.code), describeReply(mailReply)).recipients;
    const accepted = recipients.filter((r) => r.outcome === "delivered");
    if (accepted.length === 0) {
      if (dataStart?.code === 354) {
        // A 354 with nobody to deliver to: any byte now, even a lone ".", is message data and
        // could deliver an empty message. Only dropping the connection ends the data phase safely.
        this.conn.destroy();
      } else if (mailAccepted) {
        await this.rset().catch(() => undefined);
      }
      return { recipients };
    }

    dataStart ??= await this.command("DATA", "DATA", dataTimeoutMs);
    if (dataStart.code !== 354) {
      for (const r of accepted) Object.assign(r, { outcome: outcomeOfCode(dataStart.code), detail: describeReply(dataStart) });
      await this.rset().catch(() => undefined);
      return { recipients };
    }
    const octets = await this.conn.writeMessage(mail.message, this.timeoutMs);
    this.opts.onTranscript?.("C", `<${octets} octets of message data>`);
    const dataReply = await this.conn.readReply(this.dataTimeoutMs, "end of data");
    // The reply to "." applies to every recipient accepted at RCPT (RFC 5321 §4.1.1.4).
    for (const r of accepted) Object.assign(r, { outcome: outcomeOfCode(dataReply.code), detail: describeReply(dataReply) });
    return { recipients, dataReply };
  }
}
