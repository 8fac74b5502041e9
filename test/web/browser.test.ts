/**
 * The web UI in a real browser against the real server: Playwright drives Debian's chromium
 * (/usr/bin/chromium; no browser is downloaded) over HTTPS to `postern serve`. One browser for the
 * file; the tests run in order and share the server: the user's message (test 1) is the one the
 * admin holds and releases (test 2). Screenshots of each page go to test-artifacts/web-ui/
 * (git-ignored).
 */
import assert from "node:assert/strict";
import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import type { QueueEntry } from "../../src/queue/admin.js";
import { CONTENT_SECURITY_POLICY } from "../../src/web/ui/app.js";
import { freePort } from "../helpers/test-config.js";
import { ROOT, runCli, startPostern, type Postern } from "../e2e/helpers/postern.js";
import { call, csrfOf, lockOutOnWeb, login, submissionTransport } from "./helpers/web-client.js";

const ADMIN = { address: "admin@example.org", password: "admin-password-1" };
const USER = { address: "user@example.org", password: "user-password-1" };
const VICTIM = { address: "victim@example.org", password: "victim-password-1" };
const ARTIFACTS = join(ROOT, "test-artifacts/web-ui");

let server: Postern;
let webPort: number;
let browser: Browser;
/** Filled by test 1: the message the user sent with the app password, deferred (the smarthost is down). */
let queuedId: string | undefined;

before(async () => {
  const smarthostPort = await freePort(); // nothing listens: the message stays deferred
  server = await startPostern({
    users: [ADMIN, USER, VICTIM],
    config: {
      web: { address: "127.0.0.1", port: 0, admins: [ADMIN.address], incoming: { imaps: "imap.example.org:993" } },
      relay: { smarthost: `127.0.0.1:${smarthostPort}` },
      queue: { firstRetrySec: 3600 }, // only the admin's actions move it within this test
      auth: { throttle: { accountFailures: 3, penaltyBaseMs: 0 } },
    },
  });
  webPort = (await server.waitForLog((l) => l.event === "web-listening")).port as number;
  const keygen = await runCli(["dkim", "keygen", "example.org", "--algorithm", "ed25519", "--config", server.configPath]);
  assert.equal(keygen.code, 0, keygen.stderr);
  await mkdir(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await server?.cleanup();
});

const url = (path: string) => `https://127.0.0.1:${webPort}${path}`;

async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.setDefaultTimeout(5000); // every wait here is for a local page: fail fast
  return { context, page };
}

async function browserLogin(page: Page, who: { address: string; password: string }): Promise<void> {
  await page.goto(url("/ui/login"));
  await page.fill('input[name="address"]', who.address);
  await page.fill('input[name="password"]', who.password);
  await Promise.all([page.waitForURL(/\/ui\/(admin|account)$/), page.click('button:has-text("Log in")')]);
}

async function shot(page: Page, name: string): Promise<void> {
  const file = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  assert.ok((await stat(file)).size > 0, `screenshot ${file}`);
  // Every page the browser sees is script-free (CSP forbids inline script; we serve none at all).
  assert.doesNotMatch(await page.content(), /<script|\son[a-z]+=/i, name);
}

test("a user logs in, creates an app password, and sends mail with it over SMTP; the session cookie is Secure, HttpOnly, SameSite=Strict", async () => {
  const { context, page } = await newPage();
  try {
    await page.goto(url("/ui/login"));
    await shot(page, "login");
    await browserLogin(page, USER);
    assert.equal(new URL(page.url()).pathname, "/ui/account");
    const cookie = (await context.cookies()).find((c) => c.name === "__Host-postern");
    assert.ok(cookie, "session cookie set");
    assert.equal(cookie.secure, true);
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, "Strict");
    assert.equal(cookie.path, "/");
    const profileLink = await page.getAttribute("#mobileconfig", "href");
    assert.equal(profileLink, `/apple/mobileconfig?emailaddress=${encodeURIComponent(USER.address)}`);
    const profile = await context.request.get(url(profileLink));
    assert.equal(profile.status(), 200, "the autoconfig app serves the profile the page links to");
    assert.match(profile.headers()["content-type"] ?? "", /apple-aspen-config/);

    await page.fill('input[name="name"]', "phone");
    await Promise.all([page.waitForURL(/\/ui\/account$/), page.click('button:has-text("Create app password")')]);
    const appPassword = (await page.textContent("#new-secret"))?.trim();
    assert.ok(appPassword, "the new app password is shown");
    assert.match(await page.content(), /<td>phone<\/td>/);
    await shot(page, "account");

    const transport = submissionTransport(server.ports.submission, USER.address, appPassword!);
    const info = await transport.sendMail({ from: USER.address, to: "friend@elsewhere.test", subject: "from the phone", text: "hello" });
    assert.match(info.response, /^250 /);
    assert.equal((await server.waitForLog((l) => l.event === "auth-success" && l.user === USER.address)).credential, "phone");
    queuedId = (await server.waitForLog((l) => l.event === "queued")).id as string;
    await server.waitForLog((l) => l.event === "deferred" && l.id === queuedId);
    // The app password was shown once: a reload no longer has it.
    await page.reload();
    assert.equal(await page.$("#new-secret"), null);
  } finally {
    await context.close();
  }
});

test("an admin sees the chart, adds a user, and holds and releases the queued message", async () => {
  assert.ok(queuedId, "test 1 queued a message");
  const { context, page } = await newPage();
  try {
    await browserLogin(page, ADMIN);
    assert.equal(new URL(page.url()).pathname, "/ui/admin");
    assert.equal(await page.locator("svg.chart rect.bar").count(), 24 * 4);
    // The hour now has the user's message: its accepted bar is drawn above zero.
    const heights = await page.locator("svg.chart rect.accepted").evaluateAll((bars) => bars.map((b) => Number(b.getAttribute("height"))));
    assert.ok(heights.at(-1)! > 0, `accepted this hour: ${heights.join(",")}`);
    await shot(page, "dashboard");

    await page.click('nav a:has-text("Users")');
    await page.fill('form[action="/ui/admin/users"] input[name="address"]', "new@example.org");
    await page.fill('form[action="/ui/admin/users"] input[name="password"]', "new-password-1");
    await Promise.all([page.waitForURL(/\/ui\/admin\/users$/), page.click('button:has-text("Add user")')]);
    assert.match((await page.textContent('tr[data-user="new@example.org"]')) ?? "", /active/);
    await shot(page, "users");
    await page.click('a:has-text("new@example.org")');
    await shot(page, "user");

    await page.goto(url("/ui/admin/queue"));
    const row = page.locator(`tr[data-id="${queuedId}"]`);
    assert.equal(await row.locator(".status").textContent(), "deferred");
    await Promise.all([page.waitForURL(/\/ui\/admin\/queue$/), row.locator('button:has-text("Hold")').click()]);
    assert.equal(await row.locator(".status").textContent(), "held");
    const cliList = await runCli(["queue", "list", "--json", "--config", server.configPath]);
    assert.equal((JSON.parse(cliList.stdout) as QueueEntry[]).find((e) => e.id === queuedId)?.status, "held", "the CLI sees the hold");
    await shot(page, "queue-held");
    await Promise.all([page.waitForURL(/\/ui\/admin\/queue$/), row.locator('button:has-text("Release")').click()]);
    assert.notEqual(await row.locator(".status").textContent(), "held");
    await page.click(`a:has-text("${queuedId}")`);
    assert.match((await page.textContent("pre")) ?? "", /Subject: from the phone/);
    await shot(page, "queue-show");
    await page.goto(url("/ui/admin/dkim"));
    assert.match((await page.textContent("#dkim-dns")) ?? "", /^\S+\._domainkey\.example\.org\. IN TXT "v=DKIM1; k=ed25519; p=/);
    await shot(page, "dkim");

    for (const what of ["user-added", "queue-hold", "queue-release"]) {
      const line = await server.waitForLog((l) => l.event === "web-change" && l.what === what);
      assert.equal(line.user, ADMIN.address);
      assert.equal(line.ip, "127.0.0.1");
    }
    assert.ok(!server.logs.some((l) => JSON.stringify(l).includes("new-password-1")), "no password in the log");
  } finally {
    await context.close();
  }
});

test("the Content-Security-Policy the server sends stops inline script in the browser", async () => {
  const policy = (await call(webPort, "GET", "/ui/login")).headers["content-security-policy"] as string;
  assert.ok(policy);
  const { context, page } = await newPage();
  try {
    // An injected script, as an XSS would place it, on a page of our origin: once without the
    // policy (it runs: the probe works), once with the server's own header (it must not run).
    const probe = '<!doctype html><title>probe</title><script>document.title = "ran"</script><img src="x" onerror="document.title = \'ran\'">';
    for (const headers of [{}, { "content-security-policy": policy }] as Record<string, string>[]) {
      await page.route(url("/ui/csp-probe"), (route) => route.fulfill({ status: 200, contentType: "text/html", headers, body: probe }));
      const violations: string[] = [];
      page.on("console", (m) => violations.push(m.text()));
      await page.goto(url("/ui/csp-probe"));
      await page.waitForLoadState("load");
      if (Object.keys(headers).length === 0) assert.equal(await page.title(), "ran", "without a policy the probe's script runs");
      else {
        assert.equal(await page.title(), "probe", "the server's policy blocks inline script and handlers");
        assert.ok(
          violations.some((v) => /Content Security Policy/.test(v)),
          violations.join("\n"),
        );
      }
      await page.unroute(url("/ui/csp-probe"));
      page.removeAllListeners("console");
    }
  } finally {
    await context.close();
  }
});

test("CSRF: a POST without or with a wrong token is 403; every page has the CSP; logins lock out like SMTP AUTH", async () => {
  const { cookie } = await login(webPort, ADMIN.address, ADMIN.password);
  assert.ok(cookie);
  const users = await call(webPort, "GET", "/ui/admin/users", { cookie });
  const token = csrfOf(users.body)!;
  const form = { address: "mallory@example.org", password: "mallory-password" };
  assert.equal((await call(webPort, "POST", "/ui/admin/users", { cookie, form })).status, 403);
  assert.equal((await call(webPort, "POST", "/ui/admin/users", { cookie, form: { ...form, csrf: "x".repeat(token.length) } })).status, 403);
  assert.equal(
    (await call(webPort, "POST", "/ui/admin/users", { cookie, form: { ...form, csrf: token }, headers: { origin: "https://evil.test" } })).status,
    403,
  );
  const list = await runCli(["user", "list", "--config", server.configPath]);
  assert.doesNotMatch(list.stdout, /mallory/);

  const loginPage = await call(webPort, "GET", "/ui/login");
  assert.equal(loginPage.headers["content-security-policy"], CONTENT_SECURITY_POLICY);
  for (const path of ["/ui/account", "/ui/admin", "/ui/admin/users", "/ui/admin/queue", "/ui/admin/dkim"]) {
    const r = await call(webPort, "GET", path, { cookie });
    assert.equal(r.status, 200, path);
    assert.equal(r.headers["content-security-policy"], CONTENT_SECURITY_POLICY, path);
    assert.doesNotMatch(r.body, /<script|\son[a-z]+=/i, path);
  }

  // Three wrong passwords lock the account out from this address: the right one is refused too,
  // on the web and over SMTP AUTH alike (one throttle).
  await lockOutOnWeb(webPort, VICTIM, 3);
  await server.waitForLog((l) => l.event === "auth-throttled" && l.scope === "account" && l.user === VICTIM.address);
  await assert.rejects(submissionTransport(server.ports.submission, VICTIM.address, VICTIM.password).verify(), /Invalid login|454|535/);
  // The dashboard lists the lockout.
  const dash = await call(webPort, "GET", "/ui/admin", { cookie });
  assert.match(dash.body, /id="throttled"[\s\S]*victim@example\.org/);
});
