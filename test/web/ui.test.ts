/**
 * The web UI app (src/web/ui) over real HTTPS on loopback, with the real SQLite store and AUTH
 * throttle: login, sessions, CSRF, headers, throttling, admin access, escaping. The browser flows
 * against the whole server are in browser.test.ts.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { SqliteUserStore } from "../../src/auth/sqlite-store.js";
import { generateKey } from "../../src/dkim/keys.js";
import { AuthThrottle, DEFAULT_AUTH_THROTTLE } from "../../src/policy/auth-throttle.js";
import type { QueueEntry } from "../../src/queue/admin.js";
import { newQueueId } from "../../src/queue/queue-id.js";
import { HourlyCounters } from "../../src/server/hourly-counters.js";
import { CONTENT_SECURITY_POLICY, createUiApp, type UiQueue } from "../../src/web/ui/app.js";
import { escapeHtml, html } from "../../src/web/ui/html.js";
import { hourlyChart } from "../../src/web/ui/pages/chart.js";
import { SessionStore } from "../../src/web/ui/session.js";
import { makeSelfSigned } from "../helpers/self-signed.js";
import { call, cookieValue, csrfOf, login as loginAt, setCookies, type Reply } from "./helpers/web-client.js";

const Q1 = newQueueId();

class FakeQueue implements UiQueue {
  entries: QueueEntry[] = [
    {
      id: Q1,
      receivedAt: new Date().toISOString(),
      ageSec: 5,
      size: 100,
      sender: "<script>alert(1)</script>@example.org",
      recipients: [{ address: "x@example.net", status: "pending", attempts: 1 }],
      status: "deferred",
    },
  ];
  held = new Set<string>();
  async list() {
    return this.entries.map((e) => ({ ...e, status: this.held.has(e.id) ? ("held" as const) : e.status }));
  }
  async show(id: string) {
    const entry = (await this.list()).find((e) => e.id === id);
    if (!entry) throw new Error("no such message");
    return { entry, envelope: {} as never, headers: "Subject: hi\r\n" };
  }
  async hold(id: string) {
    this.held.add(id);
  }
  async release(id: string) {
    this.held.delete(id);
  }
  async delete(id: string) {
    this.entries = this.entries.filter((e) => e.id !== id);
  }
  async flush() {
    return { flushed: this.entries.length, held: [] };
  }
}

describe("web UI app", () => {
  let dir: string;
  let store: SqliteUserStore;
  let server: Server;
  let port: number;
  const logs: Record<string, unknown>[] = [];
  const queue = new FakeQueue();
  const hourly = new HourlyCounters();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-ui-"));
    await makeSelfSigned({ cn: "localhost", cert: join(dir, "cert.pem"), key: join(dir, "key.pem") });
    store = new SqliteUserStore({ path: join(dir, "users.sqlite"), hostname: "mail.example.org", cacheTtlSec: 0 });
    await store.addUser("admin@example.org", "admin-secret-1");
    await store.addUser("user@example.org", "user-secret-1");
    await store.addUser("victim@example.org", "victim-secret-1");
    generateKey(join(dir, "dkim"), "example.org", "s1", "ed25519", { state: "active" });
    const throttle = new AuthThrottle({ ...DEFAULT_AUTH_THROTTLE, accountFailures: 3, ipFailures: 50, penaltyBaseMs: 0 });
    const log = { info: (f: Record<string, unknown>) => void logs.push(f), warn: (f: Record<string, unknown>) => void logs.push(f) };
    hourly.add("accepted", 3);
    hourly.add("delivered", 2);
    const app = createUiApp({
      admins: ["admin@example.org"],
      adminFrom: ["127.0.0.0/8"],
      store,
      verifier: store,
      throttle,
      lockoutSec: 900,
      queue,
      dkim: { keysDir: join(dir, "dkim"), retiredGraceDays: 7 },
      sessionsOpen: () => ({ submission: 2 }),
      hourly,
      log,
    });
    server = createServer({ cert: await readFile(join(dir, "cert.pem")), key: await readFile(join(dir, "key.pem")) }, (req, res) => {
      const url = new URL(req.url ?? "/", "https://localhost");
      // This wrapper (not the real listener) lets a test speak from another address.
      const remoteIp = (req.headers["x-test-client"] as string | undefined) ?? req.socket.remoteAddress ?? "";
      void app.handle({ req, res, url, remoteIp }).then((done) => {
        if (!done) res.writeHead(404).end();
      });
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((ok) => server.close(ok));
    store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const login = (address: string, password: string): Promise<{ reply: Reply; cookie?: string }> => loginAt(port, address, password);

  it("sets the session cookie with Secure, HttpOnly, SameSite=Strict, Path=/ and sends the CSP on every page", async () => {
    const { reply, cookie } = await login("admin@example.org", "admin-secret-1");
    assert.equal(reply.status, 303);
    assert.equal(reply.headers.location, "/ui/admin");
    const set = setCookies(reply).find((c) => c.startsWith("__Host-postern="))!;
    for (const flag of ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"]) assert.ok(set.includes(flag), `${flag} in ${set}`);
    assert.doesNotMatch(set, /Domain=/i);
    assert.match(cookie!, /^__Host-postern=[A-Za-z0-9_-]{43}$/); // 256 random bits
    for (const path of ["/ui/login", "/ui/admin", "/ui/admin/users", "/ui/admin/queue", "/ui/admin/dkim", "/ui/account", `/ui/admin/queue/show?id=${Q1}`]) {
      const r = await call(port, "GET", path, { cookie });
      assert.equal(r.headers["content-security-policy"], CONTENT_SECURITY_POLICY, path);
      assert.doesNotMatch(r.body, /<script/i, path);
      assert.doesNotMatch(r.body, / on[a-z]+=/i, path); // no inline event handlers either
    }
  });

  it("refuses a POST without the form token, with a wrong one, or from another origin (403), and changes nothing", async () => {
    const { cookie } = await login("admin@example.org", "admin-secret-1");
    const page = await call(port, "GET", "/ui/admin/users", { cookie });
    const token = csrfOf(page.body)!;
    const form = { address: "mallory@example.org", password: "mallory-secret" };
    assert.equal((await call(port, "POST", "/ui/admin/users", { cookie, form })).status, 403);
    assert.equal(
      (await call(port, "POST", "/ui/admin/users", { cookie, form: { ...form, csrf: `${token.slice(0, -1)}${token.endsWith("A") ? "B" : "A"}` } })).status,
      403,
    );
    const crossSite = { cookie, form: { ...form, csrf: token }, headers: { origin: "https://evil.example" } };
    assert.equal((await call(port, "POST", "/ui/admin/users", crossSite)).status, 403);
    const fetchSite = { cookie, form: { ...form, csrf: token }, headers: { "sec-fetch-site": "cross-site" } };
    assert.equal((await call(port, "POST", "/ui/admin/users", fetchSite)).status, 403);
    assert.equal(await store.lookupUser("mallory@example.org"), null);
    // The same request with the token works, and is logged without the password.
    const ok = await call(port, "POST", "/ui/admin/users", { cookie, form: { ...form, csrf: token } });
    assert.equal(ok.status, 303);
    assert.ok(await store.lookupUser("mallory@example.org"));
    const change = logs.find((l) => l.event === "web-change" && l.what === "user-added");
    assert.deepEqual([change?.user, change?.target, change?.ip], ["admin@example.org", "mallory@example.org", "127.0.0.1"]);
    assert.ok(!JSON.stringify(logs).includes("mallory-secret"));
    // The login form has its own token: a login post without it is refused too.
    assert.equal((await call(port, "POST", "/ui/login", { form: { address: "admin@example.org", password: "admin-secret-1" } })).status, 403);
  });

  it("binds the form token to its session: another session's valid token is refused", async () => {
    const admin = await login("admin@example.org", "admin-secret-1");
    const other = await login("user@example.org", "user-secret-1");
    const othersToken = csrfOf((await call(port, "GET", "/ui/account", { cookie: other.cookie })).body)!;
    const ownToken = csrfOf((await call(port, "GET", "/ui/admin/users", { cookie: admin.cookie })).body)!;
    assert.notEqual(othersToken, ownToken);
    const form = { address: "leaver@example.org" };
    assert.equal((await call(port, "POST", "/ui/admin/users/disable", { cookie: admin.cookie, form: { ...form, csrf: othersToken } })).status, 403);
    assert.equal((await store.lookupUser("admin@example.org"))?.disabled, false);
    // A login's token (the pre-session cookie's) is no session token either.
    const loginPage = await call(port, "GET", "/ui/login");
    const loginToken = csrfOf(loginPage.body)!;
    assert.equal((await call(port, "POST", "/ui/logout", { cookie: admin.cookie, form: { csrf: loginToken } })).status, 403);
  });

  it("gives every login a new session id and ends the one the browser brought (no session fixation)", async () => {
    const first = await login("user@example.org", "user-secret-1");
    const page = await call(port, "GET", "/ui/login");
    const again = await call(port, "POST", "/ui/login", {
      cookie: `${first.cookie}; ${cookieValue(page, "__Host-postern-login")}`,
      form: { csrf: csrfOf(page.body)!, address: "admin@example.org", password: "admin-secret-1" },
    });
    assert.equal(again.status, 303);
    const second = cookieValue(again, "__Host-postern");
    assert.ok(second);
    assert.notEqual(second, first.cookie);
    assert.equal((await call(port, "GET", "/ui/account", { cookie: first.cookie })).headers.location, "/ui/login", "the old session is over");
    assert.equal((await call(port, "GET", "/ui/admin", { cookie: second })).status, 200);
    // A made-up session id opens nothing, and is never adopted.
    const forged = `__Host-postern=${"A".repeat(43)}`;
    assert.equal((await call(port, "GET", "/ui/account", { cookie: forged })).headers.location, "/ui/login");
  });

  it("logs every change (who, what, target, from where) and escapes what users typed; a store error goes back to our own page", async () => {
    const { cookie } = await login("admin@example.org", "admin-secret-1");
    const csrf = csrfOf((await call(port, "GET", "/ui/admin/users", { cookie })).body)!;
    const post = (path: string, form: Record<string, string>, headers: Record<string, string> = {}) =>
      call(port, "POST", path, { cookie, form: { ...form, csrf }, headers });
    const hostile = '<img src=x onerror="alert(1)">';
    await store.addUser("logged@example.org", "logged-secret-1");
    const steps: [string, Record<string, string>, string][] = [
      ["/ui/admin/users/disable", { address: "logged@example.org" }, "user-disabled"],
      ["/ui/admin/users/enable", { address: "logged@example.org" }, "user-enabled"],
      ["/ui/admin/users/password", { address: "logged@example.org", password: "logged-secret-2" }, "password-reset"],
      ["/ui/admin/users/app-passwords", { address: "logged@example.org", name: hostile }, "app-password-added"],
      ["/ui/admin/users/app-passwords/revoke", { address: "logged@example.org", name: hostile }, "app-password-revoked"],
      ["/ui/admin/queue/release", { id: Q1 }, "queue-release"],
      ["/ui/admin/queue/flush", {}, "queue-flush"],
      ["/ui/admin/queue/delete", { id: newQueueId() }, "queue-delete"],
    ];
    for (const [path, form, what] of steps) {
      const before = logs.length;
      const r = await post(path, form);
      assert.equal(r.status, 303, `${path}: ${r.body}`);
      const line = logs.slice(before).find((l) => l.event === "web-change");
      assert.equal(line?.what, what, path);
      assert.deepEqual([line.user, line.ip], ["admin@example.org", "127.0.0.1"], path);
      if (form.address) assert.equal(line.target, form.address, path);
      if (form.id) assert.equal(line.id, form.id, path);
      if (what === "app-password-added") {
        // The flash and the table show the name as text, never as markup.
        const shown = await call(port, "GET", r.headers.location as string, { cookie });
        assert.ok(shown.body.includes("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"), "escaped");
        assert.doesNotMatch(shown.body, /<img/);
      }
    }
    assert.ok(!JSON.stringify(logs).includes("logged-secret-2"), "no password in the log");
    // A failed change (the user exists) goes back to the page it came from: a path of ours,
    // whatever host the Referer names.
    const dup = await post("/ui/admin/users", { address: "logged@example.org", password: "whatever-1" }, { referer: "https://evil.example/ui/admin/users" });
    assert.equal(dup.headers.location, "/ui/admin/users");
    const away = await post("/ui/admin/users", { address: "logged@example.org", password: "whatever-1" }, { referer: "https://evil.example//evil.example/" });
    assert.equal(away.headers.location, "/ui");
  });

  it("throttles logins like SMTP AUTH: past the account's limit even the right password is refused", async () => {
    for (let i = 0; i < 3; i++) assert.equal((await login("victim@example.org", "wrong")).reply.status, 401);
    const locked = await login("victim@example.org", "victim-secret-1");
    assert.equal(locked.reply.status, 429);
    assert.equal(locked.cookie, undefined);
    assert.ok(logs.some((l) => l.event === "auth-throttled" && l.scope === "account"));
    // Another account from the same address is not locked.
    assert.equal((await login("user@example.org", "user-secret-1")).reply.status, 303);
    // The admin dashboard lists the lockout.
    const { cookie } = await login("admin@example.org", "admin-secret-1");
    const dash = await call(port, "GET", "/ui/admin", { cookie });
    assert.match(dash.body, /id="throttled"[\s\S]*victim@example\.org/);
  });

  it("keeps users out of the admin pages, and admins out of them from outside web.adminFrom", async () => {
    const { reply, cookie } = await login("user@example.org", "user-secret-1");
    assert.equal(reply.headers.location, "/ui/account");
    assert.equal((await call(port, "GET", "/ui/admin/users", { cookie })).status, 403);
    const account = await call(port, "GET", "/ui/account", { cookie });
    const post = await call(port, "POST", "/ui/admin/users/disable", { cookie, form: { csrf: csrfOf(account.body)!, address: "admin@example.org" } });
    assert.equal(post.status, 403);
    assert.equal((await store.lookupUser("admin@example.org"))?.disabled, false);
    // No session at all: the login page.
    const anon = await call(port, "GET", "/ui/admin");
    assert.equal(anon.headers.location, "/ui/login");
    // Disabled meanwhile (here through the store, as the CLI would): the session ends at the next request.
    await store.addUser("leaver@example.org", "leaver-secret-1");
    const leaver = await login("leaver@example.org", "leaver-secret-1");
    assert.equal((await call(port, "GET", "/ui/account", { cookie: leaver.cookie })).status, 200);
    store.setDisabled("leaver@example.org", true);
    assert.equal((await call(port, "GET", "/ui/account", { cookie: leaver.cookie })).headers.location, "/ui/login");
    store.setDisabled("leaver@example.org", false);
    assert.equal((await call(port, "GET", "/ui/account", { cookie: leaver.cookie })).headers.location, "/ui/login");
    // A new password set outside this app (the CLI, another node of a cluster): the session ends too.
    const reset = await login("leaver@example.org", "leaver-secret-1");
    assert.equal((await call(port, "GET", "/ui/account", { cookie: reset.cookie })).status, 200);
    await store.setPassword("leaver@example.org", "leaver-secret-2");
    assert.equal((await call(port, "GET", "/ui/account", { cookie: reset.cookie })).headers.location, "/ui/login");
    // An admin from outside web.adminFrom gets the self-service pages only.
    const away = { "x-test-client": "198.51.100.7" };
    const page = await call(port, "GET", "/ui/login", { headers: away });
    const adminAway = await call(port, "POST", "/ui/login", {
      headers: away,
      cookie: cookieValue(page, "__Host-postern-login"),
      form: { csrf: csrfOf(page.body)!, address: "admin@example.org", password: "admin-secret-1" },
    });
    assert.equal(adminAway.headers.location, "/ui/account");
    const awayCookie = cookieValue(adminAway, "__Host-postern");
    assert.equal((await call(port, "GET", "/ui/admin", { cookie: awayCookie, headers: away })).status, 403);
    assert.doesNotMatch((await call(port, "GET", "/ui/account", { cookie: awayCookie, headers: away })).body, /href="\/ui\/admin/);
    // The same session from an allowed address: the admin pages open.
    assert.equal((await call(port, "GET", "/ui/admin", { cookie: awayCookie })).status, 200);
    // An app password does not open the pages.
    const app = await store.addAppPassword("user@example.org", "laptop");
    assert.equal((await login("user@example.org", app)).reply.status, 401);
  });

  it("self-service: a new app password is shown once; a password change needs the current one", async () => {
    const { cookie } = await login("user@example.org", "user-secret-1");
    let page = await call(port, "GET", "/ui/account", { cookie });
    const r = await call(port, "POST", "/ui/account/app-passwords", { cookie, form: { csrf: csrfOf(page.body)!, name: "phone" } });
    assert.equal(r.status, 303);
    page = await call(port, "GET", "/ui/account", { cookie });
    const secret = /id="new-secret">([^<]+)</.exec(page.body)?.[1];
    assert.ok(secret);
    assert.equal((await store.verifyPassword("user@example.org", secret)).ok, true);
    assert.doesNotMatch((await call(port, "GET", "/ui/account", { cookie })).body, /new-secret/);
    const csrf = csrfOf(page.body)!;
    await call(port, "POST", "/ui/account/password", { cookie, form: { csrf, old: "not-it", new: "user-secret-2", again: "user-secret-2" } });
    assert.equal((await store.verifyPassword("user@example.org", "user-secret-1")).ok, true);
    await call(port, "POST", "/ui/account/password", { cookie, form: { csrf, old: "user-secret-1", new: "user-secret-2", again: "user-secret-2" } });
    assert.equal((await store.verifyPassword("user@example.org", "user-secret-2")).ok, true);
    assert.ok(logs.some((l) => l.event === "web-change" && l.what === "password-changed" && l.target === "user@example.org"));
    // The session that changed the password goes on (the others of that user end).
    page = await call(port, "GET", "/ui/account", { cookie });
    assert.equal(page.status, 200);
    // Logout ends the session on the server: the old cookie no longer opens anything.
    await call(port, "POST", "/ui/logout", { cookie, form: { csrf: csrfOf(page.body)! } });
    assert.equal((await call(port, "GET", "/ui/account", { cookie })).headers.location, "/ui/login");
  });

  it("admin queue actions and pages escape what they show", async () => {
    const { cookie } = await login("admin@example.org", "admin-secret-1");
    const list = await call(port, "GET", "/ui/admin/queue", { cookie });
    assert.ok(list.body.includes("&lt;script&gt;alert(1)&lt;/script&gt;@example.org"));
    await call(port, "POST", "/ui/admin/queue/hold", { cookie, form: { csrf: csrfOf(list.body)!, id: Q1 } });
    assert.match((await call(port, "GET", "/ui/admin/queue", { cookie })).body, new RegExp(`data-id="${Q1}">[\\s\\S]*?class="status">held`));
    // Anything but a queue id never reaches the queue.
    const bad = await call(port, "GET", "/ui/admin/queue/show?id=../../etc/passwd", { cookie });
    assert.equal(bad.status, 404);
    const dkim = await call(port, "GET", "/ui/admin/dkim", { cookie });
    assert.match(dkim.body, /s1\._domainkey\.example\.org\. IN TXT &quot;v=DKIM1; k=ed25519; p=/);
    const dash = await call(port, "GET", "/ui/admin", { cookie });
    assert.match(dash.body, /<svg class="chart"/);
    assert.match(dash.body, /<rect class="bar accepted"[^>]*><title>\d\d:00 UTC: 3 accepted/);
  });
});

describe("web UI pieces", () => {
  it("escapes every interpolated value once, and nested templates not again", () => {
    assert.equal(escapeHtml(`<a href="x" onclick='y'>&</a>`), "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;");
    const inner = html`<b>${"<i>"}</b>`;
    assert.equal(html`<p title="${'"x"'}">${inner}${["<", ">"]}${null}${undefined}${false}</p>`.text, `<p title="&quot;x&quot;"><b>&lt;i&gt;</b>&lt;&gt;</p>`);
  });

  it("sessions expire when idle and at their absolute lifetime", () => {
    let now = 0;
    const s = new SessionStore({ idleSec: 60, maxSec: 300 }, () => now);
    const a = s.create("a@example.org", false, null);
    now = 59_000;
    assert.ok(s.get(a.id));
    now = 59_000 + 61_000;
    assert.equal(s.get(a.id), undefined);
    const b = s.create("b@example.org", false, null);
    for (let t = now; t < now + 300_000; t += 50_000) assert.ok(s.get(b.id), `alive at ${t}`);
    now += 301_000;
    assert.equal(s.get(b.id), undefined);
  });

  it("counts hourly series for the last 24 hours and draws one bar per series and hour", () => {
    let now = Date.UTC(2026, 0, 1, 10, 30);
    const h = new HourlyCounters(() => now);
    h.observe({ event: "queued" });
    h.observe({ event: "delivered" });
    h.observe({ event: "failed" });
    h.observe({ event: "expired" });
    h.observe({ event: "connect" });
    now += 3_600_000;
    h.observe({ event: "deferred" });
    const hours = h.last24h();
    assert.equal(hours.length, 24);
    assert.deepEqual(hours.at(-2)!.counts, { accepted: 1, delivered: 1, deferred: 0, bounced: 2, authFailures: 0 });
    assert.equal(hours.at(-1)!.counts.deferred, 1);
    now += 24 * 3_600_000; // a day later the old buckets are gone
    assert.deepEqual(h.totals(), { accepted: 0, delivered: 0, deferred: 0, bounced: 0, authFailures: 0 });
    const svg = hourlyChart(hours).text;
    assert.equal((svg.match(/<rect /g) ?? []).length, 24 * 4);
  });
});
