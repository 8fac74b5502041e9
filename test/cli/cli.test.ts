/** The admin's commands, run as the real `postern` binary: config check and user management. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, writeFile, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../e2e/helpers/postern.js";

async function withConfig(yaml: string, fn: (path: string, dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "postern-cli-"));
  const path = join(dir, "postern.yaml");
  await writeFile(path, yaml);
  try {
    await fn(path, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const GOOD = `hostname: mail.example.org
dataDir: ./data
domains: [example.org]
listeners:
  - { address: 127.0.0.1, port: 2525, mode: mta }
`;

test("config check prints the effective configuration with defaults filled in", async () => {
  await withConfig(GOOD, async (path, dir) => {
    const r = await runCli(["config", "check", "--config", path]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /recipients: 100/);
    assert.match(r.stdout, /messageSize: 26214400/);
    assert.match(r.stdout, /authWithoutTls: false/);
    assert.ok(r.stdout.includes(`dataDir: ${join(dir, "data")}`), "relative paths resolved against the config file");
  });
});

test("config check names the key and line of every problem and exits 78", async () => {
  const bad = GOOD.replace("mode: mta", "mode: relay") + "mynetworks: [10.0.0.0/33]\nlimits: { recipients: 0 }\n";
  await withConfig(bad, async (path) => {
    const r = await runCli(["config", "check", "--config", path]);
    assert.equal(r.code, 78);
    assert.match(r.stderr, /postern\.yaml:5:\d+: listeners\.0\.mode: /);
    assert.match(r.stderr, /postern\.yaml:6:\d+: mynetworks\.0: must be an IP address or CIDR/);
    assert.match(r.stderr, /postern\.yaml:7:\d+: limits\.recipients: /);
  });
});

test("an unknown key is an error, not silently ignored", async () => {
  await withConfig(GOOD + "relayhost: smtp.example.net\n", async (path) => {
    const r = await runCli(["config", "check", "--config", path]);
    assert.equal(r.code, 78);
    assert.match(r.stderr, /relayhost/);
  });
});

test("user add, list, passwd and del manage the SQLite store without storing the password", async () => {
  await withConfig(GOOD, async (path, dir) => {
    const add = await runCli(["user", "add", "Ann@Example.ORG", "--password-stdin", "--sender", "@example.net", "--config", path], "pa55-word\n");
    assert.equal(add.code, 0, add.stderr);
    const dup = await runCli(["user", "add", "ann@example.org", "--password-stdin", "--config", path], "other\n");
    assert.notEqual(dup.code, 0, "a second add of the same user fails");
    const list = await runCli(["user", "list", "--json", "--config", path]);
    const users = JSON.parse(list.stdout) as { address: string; senders: string[] }[];
    assert.deepEqual(
      users.map((u) => [u.address, u.senders]),
      [["Ann@example.org", ["@example.net"]]],
    );
    const db = await readFile(join(dir, "data/users.sqlite"));
    assert.ok(!db.includes(Buffer.from("pa55-word")), "no plaintext password in the database");
    assert.equal((await stat(join(dir, "data/users.sqlite"))).mode & 0o077, 0, "the store is private to its owner");
    assert.equal((await runCli(["user", "passwd", "ann@example.org", "--password-stdin", "--config", path], "new-pass\n")).code, 0);
    assert.equal((await runCli(["user", "add", "x@example.org", "--password-stdin", "--config", path], "\n")).code, 1, "empty password refused");
    assert.equal((await runCli(["user", "del", "ann@example.org", "--config", path])).code, 0);
    assert.equal((await runCli(["user", "del", "ann@example.org", "--config", path])).code, 1);
    assert.equal((await runCli(["user", "list", "--config", path])).stdout, "");
  });
});
