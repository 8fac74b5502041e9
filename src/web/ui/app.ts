/**
 * The admin and self-service web UI (issue 17), one WebApp under /ui on the web listener.
 *
 * - Login: address and main password through the real credential verifier, behind the same
 *   AUTH throttle as SMTP (per IP and per account from a block; src/policy/auth-throttle.ts).
 *   Only users of the built-in store log in (SQLite or PostgreSQL: the ones these pages can change).
 * - Sessions: session.ts (in memory, `__Host-postern` cookie). CSRF: a per-session token in every
 *   form, compared in constant time on every POST, plus Origin and Sec-Fetch-Site checks; the
 *   login form has its own double-submit token (there is no session yet).
 * - Admin pages: users named in web.admins, from web.adminFrom addresses only (loopback by default).
 * - Every change is logged as event "web-change" (who, what, from where; never a password).
 * - Every page: CSP without script, no framing, no caching, no referrer.
 */
import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { UserStoreAdmin } from "../../auth/user-store-rules.js";
import type { InfoWarnLog } from "../../base/log.js";
import { listDomains, listKeys, publishedKeys, zoneLine } from "../../dkim/keys.js";
import type { QueueEntry } from "../../queue/admin.js";
import { QueueNotFoundError } from "../../queue/admin.js";
import { isQueueId } from "../../queue/queue-id.js";
import type { Envelope } from "../../queue/types.js";
import { guardConnection } from "../../policy/auth-guard.js";
import type { AuthThrottlePort } from "../../policy/auth-throttle.js";
import { NetworkList } from "../../policy/networks.js";
import type { CredentialVerifier, VerifyResult } from "../../sasl/types.js";
import { BodyTooLargeError, readRequestBody } from "../listener.js";
import type { WebApp, WebRequest } from "../types.js";
import type { SafeHtml } from "./html.js";
import { accountPage } from "./pages/account.js";
import { dashboardPage, dkimPage, queuePage, queueShowPage, userPage, usersPage, type DashboardData } from "./pages/admin.js";
import type { PageContext } from "./pages/layout.js";
import { loginPage, messagePage } from "./pages/login.js";
import { STYLESHEET } from "./pages/style.js";
import { readCookie, sameSecret, SESSION_COOKIE, sessionCookie, SessionStore, type WebSession } from "./session.js";

export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** The login form's double-submit cookie (no session exists yet to hold a token). */
const LOGIN_COOKIE = "__Host-postern-login";
/** Form bodies are small: a few fields. */
const MAX_BODY_BYTES = 16 * 1024;
const MIN_PASSWORD_LENGTH = 8;

/** The parts of the built-in user store the pages use: SQLite or PostgreSQL (src/store/user-store.ts). */
export type UiUserStore = Pick<
  UserStoreAdmin,
  "lookupUser" | "passwordStamp" | "listUsers" | "addUser" | "setPassword" | "setDisabled" | "addAppPassword" | "listAppPasswords" | "revokeAppPassword"
>;

/** The queue operations of `postern queue` (src/queue/admin.ts QueueAdmin). */
export interface UiQueue {
  list(): Promise<QueueEntry[]>;
  show(id: string): Promise<{ entry: QueueEntry; envelope: Envelope; headers: string }>;
  hold(id: string): Promise<void>;
  release(id: string): Promise<void>;
  delete(id: string): Promise<void>;
  flush(id?: string): Promise<{ flushed: number; held: string[] }>;
}

/** Per-hour counts (src/server/hourly-counters.ts HourlyCounters). */
export interface UiHourly {
  last24h(): { start: number; counts: { accepted: number; delivered: number; deferred: number; bounced: number; authFailures: number } }[];
}

export interface UiDeps {
  /** web.admins: addresses of store users who may use the admin pages. */
  admins: readonly string[];
  /** web.adminFrom: CIDRs the admin pages answer from. */
  adminFrom: readonly string[];
  store: UiUserStore;
  /** The server's credential verifier (src/auth/backends.ts), guarded per request by the throttle. */
  verifier: CredentialVerifier;
  /** The throttle SMTP AUTH counts with (in memory, or the cluster's on PostgreSQL): one lockout for both. */
  throttle: AuthThrottlePort;
  /** auth.throttle.lockoutSec, for the lockout log line. */
  lockoutSec: number;
  queue: UiQueue;
  dkim: { keysDir: string; retiredGraceDays: number };
  /** Open SMTP sessions per listener. */
  sessionsOpen(): Record<string, number>;
  hourly?: UiHourly;
  /** Whether the autoconfig app can serve Apple profiles (it needs web.incoming); default true. */
  mobileconfig?: boolean;
  log: InfoWarnLog;
  sessionIdleSec?: number;
  sessionMaxSec?: number;
  now?: () => number;
  /** The throttle's per-failure penalty is waited out here, as SMTP AUTH does. */
  delay?: (ms: number) => Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

type Form = URLSearchParams;

interface Ctx {
  web: WebRequest;
  session: WebSession | undefined;
  adminAllowed: boolean;
  page: PageContext;
}

export function createUiApp(deps: UiDeps): WebApp {
  const sessions = new SessionStore({ idleSec: deps.sessionIdleSec ?? 30 * 60, maxSec: deps.sessionMaxSec ?? 12 * 3600 }, deps.now);
  const admins = new Set(deps.admins.map((a) => a.trim().toLowerCase()));
  const adminFrom = new NetworkList(deps.adminFrom);
  const delay = deps.delay ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref()));
  const isAdmin = (user: string) => admins.has(user.toLowerCase());
  const stillValid = async (session: WebSession): Promise<boolean> => {
    const [user, stamp] = await Promise.all([deps.store.lookupUser(session.user), deps.store.passwordStamp(session.user)]);
    return user !== null && !user.disabled && stamp === session.passwordStamp;
  };

  const changed = (ctx: Ctx, what: string, detail: Record<string, unknown> = {}) =>
    deps.log.info({ event: "web-change", user: ctx.session?.user, ip: ctx.web.remoteIp, what, ...detail }, `web: ${what}`);

  const flash = (ctx: Ctx, kind: "ok" | "error", text: string, secret?: string) => {
    if (ctx.session) ctx.session.flash = { kind, text, ...(secret ? { secret } : {}) };
  };

  // ---- responses ---------------------------------------------------------------------------

  function send(
    web: WebRequest,
    status: number,
    body: string | SafeHtml,
    type = "text/html; charset=utf-8",
    extra: Record<string, string | string[]> = {},
  ): true {
    const res = web.res;
    res.statusCode = status;
    res.setHeader("Content-Type", type);
    res.setHeader("Content-Security-Policy", CONTENT_SECURITY_POLICY);
    res.setHeader("X-Content-Type-Options", "nosniff");
    res.setHeader("X-Frame-Options", "DENY");
    // Not no-referrer: with it, browsers send "Origin: null" on form posts, and checkOrigin needs the origin.
    res.setHeader("Referrer-Policy", "same-origin");
    res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
    res.setHeader("Cache-Control", type.startsWith("text/css") ? "max-age=3600" : "no-store");
    for (const [k, v] of Object.entries(extra)) res.setHeader(k, v);
    res.end(String(body));
    return true;
  }

  const redirect = (web: WebRequest, to: string, extra: Record<string, string | string[]> = {}) => send(web, 303, "", "text/plain", { Location: to, ...extra });

  // ---- login -------------------------------------------------------------------------------

  function showLogin(web: WebRequest, status = 200, opts: { error?: string; address?: string } = {}): true {
    // The one already set is kept: a second tab's login page must not void the first one's form.
    const current = readCookie(web.req.headers.cookie, LOGIN_COOKIE);
    const token = current && /^[A-Za-z0-9_-]{43}$/.test(current) ? current : randomBytes(32).toString("base64url");
    return send(web, status, loginPage(token, opts), undefined, {
      "Set-Cookie": `${LOGIN_COOKIE}=${token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=3600`,
    });
  }

  async function login(web: WebRequest, form: Form): Promise<true> {
    const ip = web.remoteIp;
    const address = (form.get("address") ?? "").trim();
    const password = form.get("password") ?? "";
    const guard = guardConnection(deps.throttle, ip, deps.verifier, (scope, user) =>
      deps.log.warn({ event: "auth-throttled", ip, scope, user, lockoutSec: deps.lockoutSec, via: "web" }, "web login throttled: too many failures"),
    );
    const locked = await guard.authGuard.refusal();
    if (locked !== null) {
      deps.log.warn({ event: "web-login-refused", ip, user: address, reason: locked }, "web login refused: throttled");
      return showLogin(web, 429, { error: "Too many failed logins: try again later.", address });
    }
    const result: VerifyResult =
      address && password ? await guard.verifier.verifyPassword(address, password, { remoteIp: ip }) : { ok: false, reason: "unknown-user" };
    // The main password is right, but mail needs app passwords: these pages are where those are made.
    const mainOk = result.ok ? result.credential === undefined : result.reason === "app-password-required";
    // Only users of the built-in store log in (a Dovecot or PAM login has nothing to change here).
    const user = mainOk ? (await deps.store.lookupUser(result.ok ? result.user : address))?.address : undefined;
    if (!mainOk || user === undefined) {
      const penaltyMs = await guard.authGuard.failed();
      const reason = result.ok ? (result.credential !== undefined ? "app-password" : "not-in-store") : result.reason;
      deps.log.warn({ event: "web-login-failure", ip, user: address, reason }, "web login failed");
      if (penaltyMs > 0) await delay(penaltyMs);
      if (result.ok === false && result.reason === "backend-error" && /throttled/.test(result.detail ?? "")) {
        return showLogin(web, 429, { error: "Too many failed logins: try again later.", address });
      }
      return showLogin(web, 401, { error: "Wrong address or password.", address });
    }
    await guard.authGuard.succeeded(user);
    // Always a new session id, never one the client brought: a session the cookie still names ends here.
    const previous = sessions.get(readCookie(web.req.headers.cookie, SESSION_COOKIE));
    if (previous) sessions.destroy(previous.id);
    const session = sessions.create(user, isAdmin(user), await deps.store.passwordStamp(user));
    deps.log.info({ event: "web-login", user, ip, admin: session.admin }, "web login");
    const home = session.admin && adminFrom.contains(ip) ? "/ui/admin" : "/ui/account";
    return redirect(web, home, {
      "Set-Cookie": [sessionCookie(session.id, deps.sessionMaxSec ?? 12 * 3600), `${LOGIN_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0`],
    });
  }

  // ---- request checks ----------------------------------------------------------------------

  /** Cross-site requests never change anything: Sec-Fetch-Site and Origin, where sent, must be ours. */
  function checkOrigin(web: WebRequest): void {
    const site = web.req.headers["sec-fetch-site"];
    if (site !== undefined && site !== "same-origin") throw new HttpError(403, "cross-site request refused");
    const origin = web.req.headers.origin;
    if (origin !== undefined && origin !== `https://${web.req.headers.host ?? ""}`) throw new HttpError(403, "cross-origin request refused");
  }

  function checkToken(expected: string | undefined, form: Form): void {
    const given = form.get("csrf") ?? "";
    if (!expected || !given || !sameSecret(given, expected)) throw new HttpError(403, "missing or wrong form token (reload the page and try again)");
  }

  // ---- routes ------------------------------------------------------------------------------

  async function handleGet(ctx: Ctx, path: string): Promise<true> {
    const { web, session, page } = ctx;
    const q = web.url.searchParams;
    if (path === "/ui" || path === "/ui/") return redirect(web, !session ? "/ui/login" : ctx.adminAllowed ? "/ui/admin" : "/ui/account");
    if (path === "/ui/login") return session ? redirect(web, "/ui") : showLogin(web);
    if (!session) return redirect(web, "/ui/login");
    if (path === "/ui/account")
      return send(web, 200, accountPage(page, session.user, await deps.store.listAppPasswords(session.user), deps.mobileconfig ?? true));
    if (!path.startsWith("/ui/admin")) throw new HttpError(404, "no such page");
    requireAdmin(ctx);
    switch (path) {
      case "/ui/admin":
        return send(web, 200, dashboardPage(page, await dashboard()));
      case "/ui/admin/users":
        return send(web, 200, usersPage(page, await deps.store.listUsers()));
      case "/ui/admin/user": {
        const info = await deps.store.lookupUser(q.get("address") ?? "");
        if (!info) throw new HttpError(404, "no such user");
        return send(web, 200, userPage(page, info, await deps.store.listAppPasswords(info.address)));
      }
      case "/ui/admin/queue":
        return send(web, 200, queuePage(page, await deps.queue.list()));
      case "/ui/admin/queue/show": {
        const { entry, headers } = await deps.queue.show(queueId(q.get("id") ?? ""));
        return send(web, 200, queueShowPage(page, entry, headers));
      }
      case "/ui/admin/dkim": {
        const keys = listDomains(deps.dkim.keysDir).flatMap((d) => listKeys(deps.dkim.keysDir, d));
        const records = publishedKeys(keys, deps.dkim.retiredGraceDays).map((k) => zoneLine(k.domain, k.selector, k.publicKeyDnsValue));
        return send(web, 200, dkimPage(page, keys, records));
      }
    }
    throw new HttpError(404, "no such page");
  }

  async function handlePost(ctx: Ctx, path: string, form: Form): Promise<true> {
    const { web } = ctx;
    if (path === "/ui/login") {
      checkToken(readCookie(web.req.headers.cookie, LOGIN_COOKIE), form);
      return login(web, form);
    }
    const session = ctx.session;
    if (!session) throw new HttpError(403, "not logged in (or the session expired)");
    checkToken(session.csrfToken, form);
    if (path === "/ui/logout") {
      sessions.destroy(session.id);
      deps.log.info({ event: "web-logout", user: session.user, ip: web.remoteIp }, "web logout");
      return redirect(web, "/ui/login", { "Set-Cookie": sessionCookie("", 0) });
    }
    if (path.startsWith("/ui/account")) return selfService(ctx, session, path, form);
    if (path.startsWith("/ui/admin")) {
      requireAdmin(ctx);
      return adminChange(ctx, path, form);
    }
    throw new HttpError(404, "no such page");
  }

  async function selfService(ctx: Ctx, session: WebSession, path: string, form: Form): Promise<true> {
    const back = () => redirect(ctx.web, "/ui/account");
    switch (path) {
      case "/ui/account/password": {
        const [old, next, again] = [form.get("old") ?? "", form.get("new") ?? "", form.get("again") ?? ""];
        if (next !== again) return (flash(ctx, "error", "The new passwords differ."), back());
        if (next.length < MIN_PASSWORD_LENGTH) return (flash(ctx, "error", `The new password needs at least ${MIN_PASSWORD_LENGTH} characters.`), back());
        // The old password is checked like a login: a stolen session cannot take the account over.
        const guard = guardConnection(deps.throttle, ctx.web.remoteIp, deps.verifier, () => undefined);
        if ((await guard.authGuard.refusal()) !== null) return (flash(ctx, "error", "Too many failed attempts: try again later."), back());
        const check = await guard.verifier.verifyPassword(session.user, old, { remoteIp: ctx.web.remoteIp });
        const ok = check.ok ? check.credential === undefined : check.reason === "app-password-required";
        if (!ok) {
          await guard.authGuard.failed();
          deps.log.warn({ event: "web-login-failure", ip: ctx.web.remoteIp, user: session.user, reason: "old-password" }, "web: wrong current password");
          return (flash(ctx, "error", "The current password is wrong."), back());
        }
        await deps.store.setPassword(session.user, next);
        session.passwordStamp = await deps.store.passwordStamp(session.user);
        sessions.destroyUser(session.user, session.id);
        changed(ctx, "password-changed", { target: session.user });
        return (flash(ctx, "ok", "Password changed."), back());
      }
      case "/ui/account/app-passwords": {
        const name = form.get("name") ?? "";
        const secret = await deps.store.addAppPassword(session.user, name);
        changed(ctx, "app-password-added", { target: session.user, name: name.trim() });
        return (flash(ctx, "ok", `App password "${name.trim()}" created.`, secret), back());
      }
      case "/ui/account/app-passwords/revoke": {
        const name = form.get("name") ?? "";
        const removed = await deps.store.revokeAppPassword(session.user, name);
        if (removed) changed(ctx, "app-password-revoked", { target: session.user, name });
        return (flash(ctx, removed ? "ok" : "error", removed ? `App password "${name}" revoked.` : `No app password "${name}".`), back());
      }
    }
    throw new HttpError(404, "no such page");
  }

  async function adminChange(ctx: Ctx, path: string, form: Form): Promise<true> {
    const address = (form.get("address") ?? "").trim();
    // As the control socket does (src/server/control.ts): only a queue id reaches the queue; "" = all (flush).
    const id = form.get("id") ? queueId(form.get("id")!) : "";
    const userPageOf = (a: string) => `/ui/admin/user?address=${encodeURIComponent(a)}`;
    const done = (to: string, text: string, secret?: string) => (flash(ctx, "ok", text, secret), redirect(ctx.web, to));
    switch (path) {
      case "/ui/admin/users": {
        const password = form.get("password") ?? "";
        if (password.length < MIN_PASSWORD_LENGTH) throw new HttpError(400, `the password needs at least ${MIN_PASSWORD_LENGTH} characters`);
        await deps.store.addUser(address, password);
        changed(ctx, "user-added", { target: address });
        return done("/ui/admin/users", `User ${address} added.`);
      }
      case "/ui/admin/users/disable":
      case "/ui/admin/users/enable": {
        const disable = path.endsWith("disable");
        await deps.store.setDisabled(address, disable);
        if (disable) sessions.destroyUser(address);
        changed(ctx, disable ? "user-disabled" : "user-enabled", { target: address });
        return done("/ui/admin/users", `User ${address} ${disable ? "disabled" : "enabled"}.`);
      }
      case "/ui/admin/users/password": {
        const password = form.get("password") ?? "";
        if (password.length < MIN_PASSWORD_LENGTH) throw new HttpError(400, `the password needs at least ${MIN_PASSWORD_LENGTH} characters`);
        await deps.store.setPassword(address, password);
        if (ctx.session && ctx.session.user.toLowerCase() === address.toLowerCase()) ctx.session.passwordStamp = await deps.store.passwordStamp(address);
        sessions.destroyUser(address, ctx.session?.id);
        changed(ctx, "password-reset", { target: address });
        return done(userPageOf(address), `Password of ${address} set.`);
      }
      case "/ui/admin/users/app-passwords": {
        const name = (form.get("name") ?? "").trim();
        const secret = await deps.store.addAppPassword(address, name);
        changed(ctx, "app-password-added", { target: address, name });
        return done(userPageOf(address), `App password "${name}" created for ${address}.`, secret);
      }
      case "/ui/admin/users/app-passwords/revoke": {
        const name = form.get("name") ?? "";
        if (!(await deps.store.revokeAppPassword(address, name))) throw new HttpError(404, `no app password ${JSON.stringify(name)} for ${address}`);
        changed(ctx, "app-password-revoked", { target: address, name });
        return done(userPageOf(address), `App password "${name}" of ${address} revoked.`);
      }
      case "/ui/admin/queue/hold":
        await deps.queue.hold(id);
        changed(ctx, "queue-hold", { id });
        return done("/ui/admin/queue", `Message ${id} put on hold.`);
      case "/ui/admin/queue/release":
        await deps.queue.release(id);
        changed(ctx, "queue-release", { id });
        return done("/ui/admin/queue", `Message ${id} released.`);
      case "/ui/admin/queue/delete":
        await deps.queue.delete(id);
        changed(ctx, "queue-delete", { id });
        return done("/ui/admin/queue", `Message ${id} deleted.`);
      case "/ui/admin/queue/flush": {
        const r = await deps.queue.flush(id || undefined);
        changed(ctx, "queue-flush", id ? { id } : {});
        const held = r.held.length > 0 ? ` (${r.held.length} held: release them first)` : "";
        return done("/ui/admin/queue", `${r.flushed} message(s) retried now${held}.`);
      }
    }
    throw new HttpError(404, "no such page");
  }

  function requireAdmin(ctx: Ctx): void {
    if (!ctx.session?.admin || !isAdmin(ctx.session.user)) throw new HttpError(403, "these pages are for administrators");
    if (!ctx.adminAllowed) throw new HttpError(403, "the admin pages are not reachable from your address (web.adminFrom)");
  }

  async function dashboard(): Promise<DashboardData> {
    const hours = deps.hourly?.last24h() ?? [];
    const totals = { accepted: 0, delivered: 0, deferred: 0, bounced: 0, authFailures: 0 };
    for (const h of hours) for (const k of Object.keys(totals) as (keyof typeof totals)[]) totals[k] += h.counts[k];
    return { sessions: deps.sessionsOpen(), hours, totals, queued: (await deps.queue.list()).length, throttled: await deps.throttle.lockedOut() };
  }

  // ---- the app -----------------------------------------------------------------------------

  return {
    name: "ui",
    async handle(web: WebRequest): Promise<boolean> {
      const path = web.url.pathname;
      if (path !== "/ui" && !path.startsWith("/ui/")) return false;
      const method = web.req.method ?? "GET";
      if (path === "/ui/static/ui.css" && (method === "GET" || method === "HEAD")) return send(web, 200, STYLESHEET, "text/css; charset=utf-8");
      let session = sessions.get(readCookie(web.req.headers.cookie, SESSION_COOKIE));
      // Disabled, deleted or given a new password since the login — through this node, another node
      // or the CLI: the session ends here (the store is asked, not this process's memory).
      if (session && !(await stillValid(session))) {
        sessions.destroy(session.id);
        session = undefined;
      }
      const adminAllowed = !!session?.admin && isAdmin(session.user) && adminFrom.contains(web.remoteIp);
      const ctx: Ctx = { web, session, adminAllowed, page: { session, adminAllowed } };
      try {
        if (method === "GET" || method === "HEAD") return await handleGet(ctx, path);
        if (method !== "POST") throw new HttpError(405, "method not allowed");
        checkOrigin(web);
        const form = await readForm(web.req);
        return await handlePost(ctx, path, form);
      } catch (err) {
        const known = err instanceof HttpError ? err : err instanceof QueueNotFoundError ? new HttpError(404, err.message) : undefined;
        if (known) {
          if (known.status === 403)
            deps.log.warn({ event: "web-refused", ip: web.remoteIp, path, user: session?.user, reason: known.message }, "web: request refused");
          return send(web, known.status, messagePage(known.status === 403 ? "Forbidden" : "Not done", known.message));
        }
        // A store or queue error on a change (user exists, bad address …): say so on the page it came from.
        if (method === "POST" && session && err instanceof Error) {
          session.flash = { kind: "error", text: err.message };
          const referer = web.req.headers.referer;
          const back = referer && /^https:\/\/[^/]+(\/ui\/[!-~]*)$/.exec(referer)?.[1];
          return redirect(web, back || (path.startsWith("/ui/account") ? "/ui/account" : "/ui"));
        }
        deps.log.warn({ event: "web-error", path, err: err instanceof Error ? err.message : String(err) }, "web: request failed");
        return send(web, 500, messagePage("Error", "The request failed; the server log has the details."));
      }
    },
    async close() {
      sessions.clear();
    },
  };
}

function queueId(id: string): string {
  if (!isQueueId(id)) throw new HttpError(404, "no such message in the queue");
  return id;
}

/** An application/x-www-form-urlencoded body, at most MAX_BODY_BYTES. */
async function readForm(req: IncomingMessage): Promise<Form> {
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/x-www-form-urlencoded") throw new HttpError(415, "form posts only");
  try {
    return new URLSearchParams((await readRequestBody(req, MAX_BODY_BYTES)).toString("utf8"));
  } catch (err) {
    if (err instanceof BodyTooLargeError) throw new HttpError(413, "form too large");
    throw err;
  }
}
