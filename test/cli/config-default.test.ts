/**
 * One rule for every command: --config, else $POSTERN_CONFIG, else /etc/postern/postern.yaml.
 * Only `serve` with no configuration at all runs the demo; `user` and `queue` never quietly work
 * on the demo's ./data. And `user add` refuses when another backend checks the passwords.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BIN } from "../e2e/helpers/postern.js";
import { configPathOf, DEFAULT_CONFIG_PATH, resolveConfig } from "../../src/cli/config-source.js";

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** The real binary, in `cwd`, with exactly this configuration environment. */
function cli(args: string[], opts: { cwd: string; env?: Record<string, string>; input?: string }): Promise<Result> {
  const env = { ...process.env, ...opts.env };
  if (!opts.env?.POSTERN_CONFIG) delete env.POSTERN_CONFIG;
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [BIN, ...args], { cwd: opts.cwd, env }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin?.end(opts.input ?? "");
  });
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "postern-cfgdefault-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const config = (dir: string, extra = "") => `hostname: mail.example.org
dataDir: ${join(dir, "srv")}
domains: [example.org, example.net]
listeners:
  - { address: 127.0.0.1, port: 2525, mode: mta }
${extra}`;

test("without --config, user and queue commands use $POSTERN_CONFIG, else /etc/postern/postern.yaml — never the demo's ./data", {
  skip: existsSync(DEFAULT_CONFIG_PATH) && "this machine has /etc/postern/postern.yaml",
}, async () => {
  await withDir(async (dir) => {
    const add = await cli(["user", "add", "ann@example.org", "--password-stdin"], { cwd: dir, input: "pw-1\n" });
    assert.equal(add.code, 78, add.stderr);
    assert.match(add.stderr, /no configuration file: \/etc\/postern\/postern\.yaml \(the default\) does not exist/);
    assert.match(add.stderr, /give one with --config FILE or \$POSTERN_CONFIG/);
    assert.equal(existsSync(join(dir, "data")), false, "nothing written into ./data");

    const list = await cli(["queue", "list"], { cwd: dir });
    assert.equal(list.code, 78, list.stdout);
    assert.doesNotMatch(list.stdout, /Mail queue is empty/);

    const path = join(dir, "postern.yaml");
    await writeFile(path, config(dir));
    const viaEnv = await cli(["user", "add", "ann@example.org", "--password-stdin"], { cwd: dir, env: { POSTERN_CONFIG: path }, input: "pw-1\n" });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.equal(viaEnv.stderr, `postern: using config ${path} ($POSTERN_CONFIG), data directory ${join(dir, "srv")}\n`);
    assert.ok(existsSync(join(dir, "srv/users.sqlite")));
    assert.equal(existsSync(join(dir, "data")), false);

    const del = await cli(["user", "del", "ann@example.org", "--config", path], { cwd: dir, env: { POSTERN_CONFIG: join(dir, "other.yaml") } });
    assert.equal(del.code, 0, del.stderr);
    assert.match(del.stderr, /using config .*postern\.yaml \(--config\), data directory/, "--config wins over the environment");
  });
});

test("only serve, with no configuration at all, falls back to the demo", {
  skip: existsSync(DEFAULT_CONFIG_PATH) && "this machine has /etc/postern/postern.yaml",
}, async () => {
  const saved = process.env.POSTERN_CONFIG;
  delete process.env.POSTERN_CONFIG;
  try {
    assert.deepEqual(configPathOf(undefined), { path: DEFAULT_CONFIG_PATH, origin: "default" });
    assert.equal(resolveConfig(undefined).demo, true);
    await withDir(async (dir) => {
      const path = join(dir, "postern.yaml");
      await writeFile(path, config(dir));
      process.env.POSTERN_CONFIG = path;
      const r = resolveConfig(undefined);
      assert.equal(r.demo, false);
      assert.equal(r.config.dataDir, join(dir, "srv"));
      assert.deepEqual(configPathOf(undefined), { path, origin: "$POSTERN_CONFIG" });
    });
  } finally {
    if (saved === undefined) delete process.env.POSTERN_CONFIG;
    else process.env.POSTERN_CONFIG = saved;
  }
});

test("user add and passwd refuse when passwd-file, dovecot or saslauthd checks the passwords, and say where the user belongs", async () => {
  await withDir(async (dir) => {
    const run = async (extra: string, args: string[]) => {
      const path = join(dir, "postern.yaml");
      await writeFile(path, config(dir, extra));
      return cli([...args, "--password-stdin", "--config", path], { cwd: dir, input: "pw-1\n" });
    };

    const pf = await run("auth: { backend: passwd-file, path: /etc/dovecot/users }\n", ["user", "add", "ann@example.org"]);
    assert.equal(pf.code, 1, pf.stderr);
    assert.match(
      pf.stderr,
      /ann@example\.org logs in through the passwd-file \/etc\/dovecot\/users \(auth\.backend: passwd-file\); Postern's own user store is not used for it/,
    );
    assert.match(pf.stderr, /echo "ann@example\.org:\$\(doveadm pw -s SHA512-CRYPT\)::::::" >> \/etc\/dovecot\/users/);
    assert.equal(existsSync(join(dir, "srv/users.sqlite")), false, "nothing written into the unused store");

    const dovecot = await run('auth: { backend: dovecot, socket: "unix:/run/dovecot/auth-client" }\n', ["user", "add", "ann@example.org"]);
    assert.equal(dovecot.code, 1);
    assert.match(
      dovecot.stderr,
      /ann@example\.org logs in through dovecot \(auth\.backend: dovecot, socket unix:\/run\/dovecot\/auth-client\); a password stored here would never be checked/,
    );
    assert.match(dovecot.stderr, /set the password in Dovecot's passdb/);
    assert.match(dovecot.stderr, /use --no-password/);
    const passwd = await run('auth: { backend: dovecot, socket: "unix:/run/dovecot/auth-client" }\n', ["user", "passwd", "ann@example.org"]);
    assert.equal(passwd.code, 1);
    assert.match(passwd.stderr, /logs in through dovecot/);

    const sasl = await run("auth: { backend: saslauthd, socket: /run/saslauthd/mux }\n", ["user", "add", "ann@example.org"]);
    assert.equal(sasl.code, 1);
    assert.match(sasl.stderr, /logs in through saslauthd .*a password stored here would never be checked/);
    assert.match(sasl.stderr, /for saslauthd -a pam: the system account/);

    // Per login domain: example.net's users are in a passwd-file, example.org's here.
    const perDomain = "auth: { backend: sqlite, domains: { example.net: { backend: passwd-file, path: /etc/dovecot/net-users } } }\n";
    const net = await run(perDomain, ["user", "add", "bob@example.net"]);
    assert.equal(net.code, 1);
    assert.match(net.stderr, /through the passwd-file \/etc\/dovecot\/net-users \(auth\.domains\.example\.net\.backend: passwd-file\)/);
    const org = await run(perDomain, ["user", "add", "ann@example.org"]);
    assert.equal(org.code, 0, org.stderr);
  });
});

test("with dovecot, --no-password lists a mailbox and its sender addresses without a usable password", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "postern.yaml");
    await writeFile(path, config(dir, 'auth: { backend: dovecot, socket: "unix:/run/dovecot/auth-client" }\n'));
    const add = await cli(["user", "add", "ann@example.org", "--no-password", "--sender", "@example.net", "--config", path], { cwd: dir });
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /added ann@example\.org \(mailbox only, no password\)/);
    const list = await cli(["user", "list", "--json", "--config", path], { cwd: dir });
    assert.deepEqual(
      (JSON.parse(list.stdout) as { address: string; senders: string[] }[]).map((u) => [u.address, u.senders]),
      [["ann@example.org", ["@example.net"]]],
    );
    assert.match(list.stderr, /auth\.backend is dovecot: these entries are mailboxes and sender addresses; dovecot checks the passwords/);
  });
});
