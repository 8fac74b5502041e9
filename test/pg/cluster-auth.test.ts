/**
 * Acceptance (issue 19): three real Postern nodes on one PostgreSQL. A user added or an app
 * password revoked through one node's CLI works or stops working on the others at once; ten wrong
 * passwords spread over three nodes lock the account as ten on one do; an alias set through one
 * node is a recipient on all.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { migrate } from "../../src/store/pg/migrations.js";
import { PgPool } from "../../src/store/pg/pool.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { runCli, startPostern, type Postern } from "../e2e/helpers/postern.js";
import { authPlainCode, RawSmtp } from "../e2e/helpers/raw-smtp.js";

let db: TestPostgres;
let nodes: Postern[] = [];

before(async () => {
  db = await startPostgres();
  const pool = new PgPool({ url: db.url });
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }
  nodes = await Promise.all(
    ["a", "b", "c"].map((name) =>
      startPostern({
        config: {
          store: { backend: "postgres", url: db.url, nodeName: `node-${name}`, poolSize: 4 },
          // A cache on every node: what another node changes must still count at once.
          auth: { cacheTtlSec: 60, throttle: { ipFailures: 100, accountFailures: 10, lockoutSec: 600, penaltyBaseMs: 0 } },
        },
      }),
    ),
  );
});
after(async () => {
  await Promise.all(nodes.map((n) => n.cleanup()));
  await db?.stop();
});

/** One AUTH PLAIN over implicit TLS; the reply code. */
const login = (node: Postern, user: string, password: string) => authPlainCode(node.ports.submissions, user, password);

async function cli(node: Postern, args: string[], input?: string): Promise<string> {
  const r = await runCli([...args, "--config", node.configPath], input);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

test("a user added through one node's CLI logs in on every node at once; deleted, it stops everywhere", async () => {
  const [a, b, c] = nodes as [Postern, Postern, Postern];
  assert.equal(await login(b, "new@example.org", "pass-of-new"), 535, "unknown before");
  await cli(a, ["user", "add", "new@example.org", "--password-stdin"], "pass-of-new\n");
  assert.equal(await login(b, "new@example.org", "pass-of-new"), 235);
  assert.equal(await login(c, "new@example.org", "pass-of-new"), 235);
  assert.equal(await login(a, "new@example.org", "wrong"), 535);
  assert.match(await cli(c, ["user", "list"]), /^new@example\.org$/m, "listed from any node");
  await cli(c, ["user", "passwd", "new@example.org", "--password-stdin"], "second-pass\n");
  assert.equal(await login(b, "new@example.org", "pass-of-new"), 535, "the old password, cached on b, no longer works");
  assert.equal(await login(a, "new@example.org", "second-pass"), 235);
  await cli(b, ["user", "del", "new@example.org"]);
  assert.equal(await login(a, "new@example.org", "second-pass"), 535);
});

test("an app password made on one node works on the others; revoked through another node, it stops on all at once", async () => {
  const [a, b, c] = nodes as [Postern, Postern, Postern];
  await cli(a, ["user", "add", "tim@example.org", "--password-stdin"], "tims-main-password\n");
  const phone = (await cli(b, ["user", "app-password", "add", "tim@example.org", "--name", "phone"])).trim();
  assert.match(phone, /^[a-z0-9]{4}(-[a-z0-9]{4}){4}$/);
  for (const node of nodes) assert.equal(await login(node, "tim@example.org", phone), 235);
  // Every node has it cached now; the revocation is a row gone, which each login reads.
  await cli(c, ["user", "app-password", "revoke", "tim@example.org", "phone"]);
  for (const node of nodes) assert.equal(await login(node, "tim@example.org", phone), 535);
  assert.equal(await login(a, "tim@example.org", "tims-main-password"), 235, "the main password is untouched");
  await cli(a, ["user", "require-app-passwords", "tim@example.org", "on"]);
  assert.equal(await login(b, "tim@example.org", "tims-main-password"), 535, "required elsewhere: refused here at once");
});

test("ten wrong passwords spread over three nodes lock the account, as ten on one do", async () => {
  const [a] = nodes as [Postern, Postern, Postern];
  await cli(a, ["user", "add", "ann@example.org", "--password-stdin"], "anns-password\n");
  await cli(a, ["user", "add", "bob@example.org", "--password-stdin"], "bobs-password\n");
  // On one node: ten failures, then even the right password is refused (454) for the lockout.
  for (let i = 0; i < 10; i++) assert.equal(await login(a, "bob@example.org", `guess-${i}`), 535);
  assert.equal(await login(a, "bob@example.org", "bobs-password"), 454);
  // Spread over three: the same.
  for (let i = 0; i < 10; i++) assert.equal(await login(nodes[i % 3]!, "ann@example.org", `guess-${i}`), 535, `failure ${i + 1}`);
  for (const node of nodes) assert.equal(await login(node, "ann@example.org", "anns-password"), 454, "locked out on every node");
  // The lockout began once in the cluster: one node logs it.
  const logged = async () => nodes.flatMap((n) => n.logs).filter((l) => l.event === "auth-throttled" && l.user === "ann@example.org");
  await Promise.any(nodes.map((n) => n.waitForLog((l) => l.event === "auth-throttled" && l.user === "ann@example.org")));
  assert.equal((await logged()).length, 1);
});

/** RCPT on port 25 for a local address; the reply code. */
async function rcpt(node: Postern, address: string): Promise<number> {
  const c = await RawSmtp.open(node.ports.mta);
  try {
    await c.reply();
    await c.expect("EHLO client.test", 250);
    await c.expect("MAIL FROM:<someone@elsewhere.test>", 250);
    return (await c.cmd(`RCPT TO:<${address}>`)).code;
  } finally {
    c.close();
  }
}

test("an alias set through one node's CLI is a recipient on every node at once; deleted, it is gone from every node at once", async () => {
  const [a, b, c] = nodes as [Postern, Postern, Postern];
  await cli(a, ["user", "add", "kim@example.org", "--password-stdin"], "kims-password\n");
  assert.equal(await rcpt(b, "sales@example.org"), 550, "unknown before");
  assert.equal((await cli(a, ["alias", "set", "Sales@Example.org", "kim", "boss@elsewhere.test"])).trim(), "sales@example.org: kim, boss@elsewhere.test");
  for (const node of nodes) assert.equal(await rcpt(node, "sales@example.org"), 250);
  await cli(b, ["alias", "set", "@example.org", "kim@example.org"]);
  assert.equal(await rcpt(c, "whoever@example.org"), 250, "a catch-all from the database");
  assert.equal(await cli(c, ["alias", "list"]), "@example.org: kim@example.org\nsales@example.org: kim, boss@elsewhere.test\n");
  await cli(c, ["alias", "del", "@example.org"]);
  await cli(c, ["alias", "del", "sales@example.org"]);
  assert.equal(await rcpt(a, "sales@example.org"), 550, "deleted through another node: gone here at once");
  assert.equal(await rcpt(b, "whoever@example.org"), 550);
  const refused = await runCli(["alias", "set", "pipe@example.org", "|/bin/sh", "--config", a.configPath]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /not an address/, "targets stay addresses, as in the file");
});
