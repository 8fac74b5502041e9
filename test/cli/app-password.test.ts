/** `postern user app-password add|list|revoke` and `user require-app-passwords`, as the real binary. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteUserStore } from "../../src/auth/sqlite-store.js";
import { runCli } from "../e2e/helpers/postern.js";

const CONFIG = `hostname: mail.example.org
dataDir: ./data
domains: [example.org, example.net]
listeners:
  - { address: 127.0.0.1, port: 2525, mode: mta }
auth:
  domains:
    example.net: { backend: passwd-file, path: ./users.passwd }
`;

async function withConfig(fn: (path: string, dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "postern-cli-app-"));
  const path = join(dir, "postern.yaml");
  await writeFile(path, CONFIG);
  await writeFile(join(dir, "users.passwd"), "");
  try {
    await fn(path, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("app-password add prints the password alone on stdout; list shows it unused; revoke removes it", () =>
  withConfig(async (config, dir) => {
    assert.equal((await runCli(["user", "add", "ann@example.org", "--password-stdin", "--config", config], "main-pw\n")).code, 0);
    const add = await runCli(["user", "app-password", "add", "ann@example.org", "--name", "phone", "--config", config]);
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /^[a-z0-9]{4}(-[a-z0-9]{4}){4}\n$/);
    const fresh = await runCli(["user", "app-password", "list", "ann@example.org", "--config", config]);
    assert.match(fresh.stdout, /^phone {2}created \d{4}-\d\d-\d\dT\S+ {2}never used\n$/);
    assert.match(add.stderr, /app password "phone" added for ann@example\.org/);
    const password = add.stdout.trim();

    const store = new SqliteUserStore({ path: join(dir, "data", "users.sqlite"), hostname: "mail.example.org", cacheTtlSec: 0 });
    try {
      assert.deepEqual(await store.verifyPassword("ann@example.org", password), { ok: true, user: "ann@example.org", credential: "phone" });
    } finally {
      store.close();
    }

    const dup = await runCli(["user", "app-password", "add", "ann@example.org", "--name", "phone", "--config", config]);
    assert.notEqual(dup.code, 0);
    assert.equal(dup.stdout, "", "nothing on stdout when nothing was made");
    assert.match(dup.stderr, /already has an app password named "phone"/);

    const list = await runCli(["user", "app-password", "list", "ann@example.org", "--config", config]);
    assert.equal(list.code, 0, list.stderr);
    // Used once above, by a caller that named no client address.
    assert.match(list.stdout, /^phone {2}created \d{4}-\d\d-\d\dT\S+ {2}last used \S+ from an unknown address\n$/);
    assert.ok(!list.stdout.includes(password));
    assert.match(list.stderr, /main password accepted/);

    const revoke = await runCli(["user", "app-password", "revoke", "ann@example.org", "phone", "--config", config]);
    assert.equal(revoke.code, 0, revoke.stderr);
    const after = await runCli(["user", "app-password", "list", "ann@example.org", "--config", config]);
    assert.equal(after.stdout, "");
    assert.match(after.stderr, /has no app passwords/);
  }));

test("require-app-passwords on|off|default; add --require-app-passwords; bad state and unknown user refused", () =>
  withConfig(async (config) => {
    const add = await runCli(["user", "add", "bob@example.org", "--password-stdin", "--require-app-passwords", "--config", config], "main-pw\n");
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /app passwords only/);
    const list = async () => (await runCli(["user", "app-password", "list", "bob@example.org", "--config", config])).stderr;
    assert.match(await list(), /main password refused\n/);
    const off = await runCli(["user", "require-app-passwords", "bob@example.org", "off", "--config", config]);
    assert.equal(off.code, 0, off.stderr);
    assert.match(off.stdout, /bob@example\.org: app passwords not required/);
    const dflt = await runCli(["user", "require-app-passwords", "bob@example.org", "default", "--config", config]);
    assert.match(dflt.stdout, /not required \(auth\.requireAppPasswords\)/);
    assert.match(await list(), /main password accepted \(auth\.requireAppPasswords\)/);
    const bad = await runCli(["user", "require-app-passwords", "bob@example.org", "maybe", "--config", config]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /expected on, off or default/);
    const nobody = await runCli(["user", "app-password", "add", "nobody@example.org", "--name", "x", "--config", config]);
    assert.notEqual(nobody.code, 0);
    assert.match(nobody.stderr, /no such user/);
    const noName = await runCli(["user", "app-password", "add", "bob@example.org", "--config", config]);
    assert.notEqual(noName.code, 0);
    assert.match(noName.stderr, /--name/);
  }));

test("app passwords are refused for logins another backend checks", () =>
  withConfig(async (config) => {
    const r = await runCli(["user", "app-password", "add", "carl@example.net", "--name", "phone", "--config", config]);
    assert.notEqual(r.code, 0);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /logs in through passwd-file .*app passwords work only with the SQLite store/);
  }));
