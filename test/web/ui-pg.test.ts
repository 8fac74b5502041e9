/**
 * The web UI on a PostgreSQL store (`store.backend: postgres`): the same pages on the other
 * backend of the UserStore, queue and AUTH-throttle ports. An admin logs in, adds a user, makes
 * them an app password that then submits real mail over SMTP, holds and releases that message;
 * web logins and SMTP AUTH share the cluster-wide lockout. Plain HTTPS from node (the browser
 * flows on SQLite are in browser.test.ts).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { migrate } from "../../src/store/pg/migrations.js";
import { PgPool } from "../../src/store/pg/pool.js";
import type { QueueEntry } from "../../src/queue/admin.js";
import { runCli, startPostern, type Postern } from "../e2e/helpers/postern.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { freePort } from "../helpers/test-config.js";
import { call, csrfOf, lockOutOnWeb, login, submissionTransport } from "./helpers/web-client.js";

const ADMIN = { address: "admin@example.org", password: "admin-password-1" };
const VICTIM = { address: "victim@example.org", password: "victim-password-1" };

let db: TestPostgres;
let server: Postern;
let webPort: number;

before(async () => {
  db = await startPostgres();
  const admin = new PgPool({ url: db.url, poolSize: 1 });
  try {
    await migrate(admin);
  } finally {
    await admin.end();
  }
  const smarthostPort = await freePort(); // nothing listens: the message stays deferred
  server = await startPostern({
    users: [ADMIN, VICTIM],
    config: {
      store: { backend: "postgres", url: db.url, nodeName: "web-node" },
      web: { address: "127.0.0.1", port: 0, admins: [ADMIN.address] },
      relay: { smarthost: `127.0.0.1:${smarthostPort}` },
      queue: { firstRetrySec: 3600 }, // only the admin's actions move it within this test
      auth: { throttle: { accountFailures: 3, penaltyBaseMs: 0 } },
    },
  });
  webPort = (await server.waitForLog((l) => l.event === "web-listening")).port as number;
});

after(async () => {
  await server?.stop();
  await server?.cleanup();
  await db?.stop();
});

/** A change posted with the page's form token; the answer must be the redirect back. */
async function post(cookie: string, page: string, path: string, form: Record<string, string>): Promise<string> {
  const token = csrfOf((await call(webPort, "GET", page, { cookie })).body);
  assert.ok(token, `a form token on ${page}`);
  const reply = await call(webPort, "POST", path, { cookie, form: { ...form, csrf: token } });
  assert.equal(reply.status, 303, `${path}: ${reply.body}`);
  return reply.headers.location as string;
}

const queueEntry = async (id: string) =>
  (JSON.parse((await runCli(["queue", "list", "--json", "--config", server.configPath])).stdout) as QueueEntry[]).find((e) => e.id === id);

test("on PostgreSQL: the admin adds a user and an app password that sends over SMTP, then holds and releases that message", async () => {
  const { reply, cookie } = await login(webPort, ADMIN.address, ADMIN.password);
  assert.equal(reply.status, 303);
  assert.equal(reply.headers.location, "/ui/admin");
  assert.ok(cookie);
  const dashboard = await call(webPort, "GET", "/ui/admin", { cookie });
  assert.equal(dashboard.status, 200);
  assert.match(dashboard.body, /<svg[^>]*class="chart"/);

  await post(cookie, "/ui/admin/users", "/ui/admin/users", { address: "new@example.org", password: "new-password-1" });
  const users = await runCli(["user", "list", "--config", server.configPath]);
  assert.match(users.stdout, /new@example\.org/, "the user is in PostgreSQL");
  const userPage = await post(cookie, "/ui/admin/user?address=new%40example.org", "/ui/admin/users/app-passwords", {
    address: "new@example.org",
    name: "laptop",
  });
  const shown = await call(webPort, "GET", userPage, { cookie });
  const appPassword = /id="new-secret">([^<]+)</.exec(shown.body)?.[1];
  assert.ok(appPassword, "the new app password is shown once");
  assert.match(shown.body, /<td>laptop<\/td>/);

  const transport = submissionTransport(server.ports.submission, "new@example.org", appPassword!);
  const info = await transport.sendMail({ from: "new@example.org", to: "friend@elsewhere.test", subject: "via pg", text: "hello" });
  assert.match(info.response, /^250 /);
  assert.equal((await server.waitForLog((l) => l.event === "auth-success" && l.user === "new@example.org")).credential, "laptop");
  const id = (await server.waitForLog((l) => l.event === "queued")).id as string;
  await server.waitForLog((l) => l.event === "deferred" && l.id === id);

  // "deferred" is logged as the attempt ends; the node still holds the message's lease (the page
  // says "active", and a hold would be refused) until it has written the result: look again until
  // the page shows it back in the queue.
  const row = new RegExp(`<tr data-id="${id}">.*?<td class="status">deferred</td>`);
  let queue = await call(webPort, "GET", "/ui/admin/queue", { cookie });
  for (const deadline = Date.now() + 10_000; !row.test(queue.body) && Date.now() < deadline; ) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    queue = await call(webPort, "GET", "/ui/admin/queue", { cookie });
  }
  assert.match(queue.body, row);
  await post(cookie, "/ui/admin/queue", "/ui/admin/queue/hold", { id });
  assert.equal((await queueEntry(id))?.status, "held", "held in PostgreSQL's queue");
  await post(cookie, "/ui/admin/queue", "/ui/admin/queue/release", { id });
  assert.notEqual((await queueEntry(id))?.status, "held");
  for (const what of ["user-added", "app-password-added", "queue-hold", "queue-release"]) {
    const line = await server.waitForLog((l) => l.event === "web-change" && l.what === what);
    assert.equal(line.user, ADMIN.address);
  }
});

test("on PostgreSQL: web logins and SMTP AUTH share the cluster-wide lockout", async () => {
  await lockOutOnWeb(webPort, VICTIM, 3);
  await assert.rejects(submissionTransport(server.ports.submission, VICTIM.address, VICTIM.password).verify(), /454|535|Invalid login/);
  await server.waitForLog((l) => l.event === "auth-failure" && l.reason === "backend-error" && /throttled/.test(String(l.detail)));
});

test("on PostgreSQL: a password set through the CLI (as on any other node) ends the user's web sessions", async () => {
  const user = { address: "mover@example.org", password: "mover-password-1" };
  const add = await runCli(["user", "add", user.address, "--password-stdin", "--config", server.configPath], `${user.password}\n`);
  assert.equal(add.code, 0, add.stderr);
  const { cookie } = await login(webPort, user.address, user.password);
  assert.ok(cookie);
  assert.equal((await call(webPort, "GET", "/ui/account", { cookie })).status, 200);
  const reset = await runCli(["user", "passwd", user.address, "--password-stdin", "--config", server.configPath], "mover-password-2\n");
  assert.equal(reset.code, 0, reset.stderr);
  assert.equal((await call(webPort, "GET", "/ui/account", { cookie })).headers.location, "/ui/login");
});
