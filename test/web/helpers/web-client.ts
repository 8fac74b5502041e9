/** Plain HTTPS requests to the web listener from node (no browser): for CSRF, header and throttle checks. */
import assert from "node:assert/strict";
import { request } from "node:https";
import nodemailer from "nodemailer";

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request; `form` is sent url-encoded; the self-signed certificate is accepted. */
export function call(
  port: number,
  method: string,
  path: string,
  o: { cookie?: string; form?: Record<string, string>; headers?: Record<string, string>; localAddress?: string } = {},
): Promise<Reply> {
  const body = o.form ? new URLSearchParams(o.form).toString() : undefined;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        rejectUnauthorized: false,
        ...(o.localAddress ? { localAddress: o.localAddress } : {}),
        headers: {
          ...(o.cookie ? { cookie: o.cookie } : {}),
          ...(body !== undefined ? { "content-type": "application/x-www-form-urlencoded" } : {}),
          ...o.headers,
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

export const setCookies = (r: Reply): string[] => (r.headers["set-cookie"] as string[] | undefined) ?? [];
/** "name=value" of a cookie the reply sets. */
export const cookieValue = (r: Reply, name: string): string | undefined =>
  setCookies(r)
    .find((c) => c.startsWith(`${name}=`))
    ?.split(";")[0];
/** The form token of the first form on a page. */
export const csrfOf = (body: string): string | undefined => /name="csrf" value="([^"]+)"/.exec(body)?.[1];

/** Logs in through the login form as a browser would (its token cookie, then the post); `from`: a local source address. */
export async function login(port: number, address: string, password: string, from?: string): Promise<{ reply: Reply; cookie?: string }> {
  const source = from ? { localAddress: from } : {};
  const page = await call(port, "GET", "/ui/login", source);
  const loginCookie = cookieValue(page, "__Host-postern-login")!;
  const reply = await call(port, "POST", "/ui/login", { ...source, cookie: loginCookie, form: { csrf: csrfOf(page.body)!, address, password } });
  return { reply, cookie: cookieValue(reply, "__Host-postern") };
}

/** Wrong passwords until the account's limit, then the right one: refused (429) and no session. */
export async function lockOutOnWeb(port: number, who: { address: string; password: string }, failures: number): Promise<void> {
  for (let i = 0; i < failures; i++) assert.equal((await login(port, who.address, `wrong-password-${i}`)).reply.status, 401);
  const locked = await login(port, who.address, who.password);
  assert.equal(locked.reply.status, 429);
  assert.equal(locked.cookie, undefined);
}

/** A nodemailer transport for the submission port (STARTTLS required; the test certificate accepted). */
export function submissionTransport(port: number, user: string, pass: string) {
  return nodemailer.createTransport({ host: "127.0.0.1", port, requireTLS: true, tls: { rejectUnauthorized: false }, auth: { user, pass } });
}
