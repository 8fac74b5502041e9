/**
 * saslauthd client (Cyrus SASL's `saslauthd` socket, as Postfix and Sendmail use it through
 * libsasl's `pwcheck_method: saslauthd`): one connection per check; the request is four counted
 * strings — login, password, service, realm — each a 2-byte big-endian length and the bytes; the
 * answer is one counted string starting "OK" or "NO". PLAIN and LOGIN only: saslauthd checks
 * plaintext passwords (PAM, shadow, LDAP, …) and cannot tell an unknown user from a wrong password.
 */
import { connect } from "node:net";

import type { VerifyResult } from "../sasl/types.js";
import { PasswordOnlyAuthenticator } from "./password-only.js";
import type { InfoWarnLog } from "../base/log.js";

export interface SaslauthdOptions {
  /** The mux socket: /run/saslauthd/mux (Debian: /var/run/saslauthd/mux). */
  socket: string;
  service: string;
  /** Realm sent with each check; empty by default (saslauthd -r splits user@realm itself). */
  realm?: string;
  timeoutMs?: number;
  log?: InfoWarnLog;
}

const MAX_FIELD = 0xffff;

function counted(text: string): Buffer {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length > MAX_FIELD) throw new Error("saslauthd field too long");
  const head = Buffer.alloc(2);
  head.writeUInt16BE(bytes.length);
  return Buffer.concat([head, bytes]);
}

/** Sends one request and reads the counted answer; rejects on timeout, socket error or a short reply. */
export function saslauthdRequest(socketPath: string, fields: string[], timeoutMs: number): Promise<string> {
  const request = Buffer.concat(fields.map(counted));
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let got = Buffer.alloc(0);
    const done = (err: Error | null, answer?: string) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(answer!);
    };
    const timer = setTimeout(() => done(new Error(`saslauthd did not answer within ${timeoutMs} ms`)), timeoutMs);
    sock.on("connect", () => sock.write(request));
    sock.on("data", (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) done(null, got.subarray(2, 2 + got.readUInt16BE(0)).toString("utf8"));
    });
    sock.on("error", (err) => done(err));
    sock.on("close", () => done(new Error("saslauthd closed the connection without an answer")));
  });
}

/** saslauthd checks passwords and hands out no secrets. */
export class SaslauthdAuthenticator extends PasswordOnlyAuthenticator {
  constructor(private readonly opts: SaslauthdOptions) {
    super();
  }

  async verifyPassword(user: string, password: string): Promise<VerifyResult> {
    // SECURITY.md rule 15: never ask with an empty user or password (some PAM stacks accept them).
    if (user === "" || password === "") return { ok: false, reason: "bad-password", detail: "empty user or password" };
    if (/[\0\r\n]/.test(user)) return { ok: false, reason: "unknown-user", detail: "control character in user name" };
    try {
      const answer = await saslauthdRequest(this.opts.socket, [user, password, this.opts.service, this.opts.realm ?? ""], this.opts.timeoutMs ?? 5000);
      if (answer.startsWith("OK")) return { ok: true, user };
      // "NO" covers both unknown user and wrong password: saslauthd does not say which.
      if (answer.startsWith("NO")) return { ok: false, reason: "bad-password", detail: `saslauthd: ${answer.slice(0, 100)}` };
      return { ok: false, reason: "backend-error", detail: "saslauthd: unexpected answer" };
    } catch (err) {
      this.opts.log?.warn({ event: "auth-backend-error", backend: "saslauthd", err: String(err) }, "saslauthd unavailable");
      return { ok: false, reason: "backend-error", detail: `saslauthd: ${(err as Error).message}` };
    }
  }
}
