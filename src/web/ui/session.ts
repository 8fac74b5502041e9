/**
 * Web sessions: a random 256-bit id in the `__Host-postern` cookie (Secure, HttpOnly,
 * SameSite=Strict, Path=/, no Domain: the __Host- prefix makes the browser insist on all of
 * that), the session itself only in this process's memory. A session ends when idle too long, at
 * its absolute lifetime, or at logout; a restart ends them all. Each holds its own CSRF token.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

export const SESSION_COOKIE = "__Host-postern";

export interface WebSession {
  id: string;
  user: string;
  /** Whether this login may see the admin pages (web.admins; the address is checked per request). */
  admin: boolean;
  /** The store's stamp of the main password at login (or at this session's own change): a password
   * set anywhere else — another node, the CLI — ends the session (checked per request). */
  passwordStamp: string | null;
  /** Sent in every form as a hidden field; checked on every POST. */
  csrfToken: string;
  createdAt: number;
  lastSeenAt: number;
  /** A new app password, shown once on the next page and then forgotten. */
  flash?: { kind: "ok" | "error"; text: string; secret?: string };
}

export interface SessionLimits {
  idleSec: number;
  maxSec: number;
}

/** Sessions kept at most: logins are throttled, but memory must stay bounded whatever happens. */
const MAX_SESSIONS = 10_000;

export class SessionStore {
  private readonly sessions = new Map<string, WebSession>();

  constructor(
    private readonly limits: SessionLimits,
    private readonly now: () => number = Date.now,
  ) {}

  create(user: string, admin: boolean, passwordStamp: string | null): WebSession {
    this.sweep();
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    const now = this.now();
    const session: WebSession = {
      id: randomBytes(32).toString("base64url"),
      user,
      admin,
      passwordStamp,
      csrfToken: randomBytes(32).toString("base64url"),
      createdAt: now,
      lastSeenAt: now,
    };
    this.sessions.set(session.id, session);
    return session;
  }

  /** The live session for a cookie value, its idle clock restarted; undefined when unknown or expired. */
  get(id: string | undefined): WebSession | undefined {
    if (!id) return undefined;
    const session = this.sessions.get(id);
    if (!session) return undefined;
    const now = this.now();
    if (now - session.lastSeenAt > this.limits.idleSec * 1000 || now - session.createdAt > this.limits.maxSec * 1000) {
      this.sessions.delete(id);
      return undefined;
    }
    session.lastSeenAt = now;
    return session;
  }

  destroy(id: string): void {
    this.sessions.delete(id);
  }

  /** Ends every session of a user (password changed or account disabled elsewhere), but `keep`. */
  destroyUser(user: string, keep?: string): void {
    const u = user.toLowerCase();
    for (const [id, s] of this.sessions) if (s.user.toLowerCase() === u && id !== keep) this.sessions.delete(id);
  }

  get size(): number {
    return this.sessions.size;
  }

  clear(): void {
    this.sessions.clear();
  }

  private sweep(): void {
    const now = this.now();
    for (const [id, s] of this.sessions) {
      if (now - s.lastSeenAt > this.limits.idleSec * 1000 || now - s.createdAt > this.limits.maxSec * 1000) this.sessions.delete(id);
    }
  }
}

/** The Set-Cookie value for a session; maxAge 0 clears it. */
export function sessionCookie(id: string, maxAgeSec: number): string {
  return `${SESSION_COOKIE}=${id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSec}`;
}

/** One cookie's value from a Cookie header (the first of that name). */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Constant-time comparison of two strings of any length (hashed first, so lengths do not leak). */
export function sameSecret(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}
