/**
 * Issue 12: a second `postern serve` on the data directory of a running server. It used to run
 * spool recovery before noticing the first server, deleting the message a client was still
 * sending (then the first server answered 250 for a file that was gone: acknowledged and lost).
 * Now the data directory is locked before anything touches it, and a refused start changes nothing.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, type AddressInfo, type Server } from "node:net";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { startPostern, type Postern } from "./helpers/postern.js";
import { RawSmtp } from "./helpers/raw-smtp.js";
import { serveOnce } from "./helpers/serve-once.js";
import { baseTestConfig } from "../helpers/test-config.js";

const list = async (dir: string) => (existsSync(dir) ? (await readdir(dir)).sort() : []);

describe("a second serve on the same data directory (issue 12)", () => {
  let pg: Postern;
  before(async () => {
    pg = await startPostern({ users: [{ address: "jane@example.org", password: "x" }] });
  });
  after(async () => {
    await pg?.cleanup();
  });

  it("is refused while a client is mid-DATA: it exits non-zero, removes nothing, and the first server delivers the message", async () => {
    const queue = join(pg.dir, "data/queue");
    const c = await RawSmtp.open(pg.ports.mta);
    await c.reply();
    await c.expect("EHLO client.test", 250);
    await c.expect("MAIL FROM:<someone@example.net>", 250);
    await c.expect("RCPT TO:<jane@example.org>", 250);
    await c.expect("DATA", 354);
    c.write("Subject: sent across a second start\r\n\r\nfirst half of the body\r\n");
    // The message file exists from 354 on, without its envelope: exactly what recovery removes.
    const receiving = await list(join(queue, "msg"));
    assert.equal(receiving.length, 1);
    assert.deepEqual(await list(join(queue, "env")), []);

    const second = await serveOnce(["--config", pg.configPath]);
    assert.equal(second.timedOut, false, "the second server must not start");
    assert.notEqual(second.code, 0);
    // Nothing on disk changed under the running server.
    assert.deepEqual(await list(join(queue, "msg")), receiving, "the message being received is still there");
    assert.deepEqual(await list(join(queue, "quarantine")), []);
    assert.doesNotMatch(second.stdout, /"event":"(listening|spool-orphan-removed|spool-recovered|queue-started)"/, second.stdout);
    // The refusal says who holds the directory and where it was configured.
    assert.match(second.stderr, /another postern \(pid \d+\) is already serving the data directory/);
    assert.ok(second.stderr.includes(String(pg.pid)), second.stderr);
    assert.ok(second.stderr.includes(join(pg.dir, "data")), second.stderr);
    assert.ok(second.stderr.includes(pg.configPath), "the message names the configuration file");

    c.write("second half\r\n.\r\n");
    const done = await c.reply();
    assert.equal(done.code, 250, done.text);
    const id = /queued as (\S+)/.exec(done.text)![1]!;
    await c.expect("QUIT", 221);
    await pg.waitForLog((l) => l.event === "maildir-stored" && l.id === id);
    const inbox = join(pg.dir, "mail/example.org/jane/new");
    const [file] = await readdir(inbox);
    const stored = await readFile(join(inbox, file!), "utf8");
    assert.match(stored, /first half of the body\r\nsecond half\r\n/);
    assert.ok(pg.running());
    assert.equal(pg.logs.filter((l) => /^spool-/.test(String(l.event))).length, 0, "the first server saw no recovery");
  });

  it("the demo started twice in one folder: the second is refused the same way", async () => {
    const cwd = await mkdtemp(join(tmpdir(), "postern-demo-twice-"));
    try {
      // Ephemeral ports, so both would bind: only the data directory lock can stop the second.
      const first = await startDemo(cwd);
      try {
        const second = await serveOnce(["--demo-ports", "0"], { cwd });
        assert.equal(second.timedOut, false);
        assert.notEqual(second.code, 0);
        assert.match(second.stderr, /another postern \(pid \d+\) is already serving the data directory/);
        assert.match(second.stderr, /embedded demo configuration/);
      } finally {
        first.kill("SIGTERM");
        await new Promise((ok) => first.once("exit", ok));
      }
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  });
});

async function startDemo(cwd: string) {
  const { spawn } = await import("node:child_process");
  const { BIN } = await import("./helpers/postern.js");
  const child = spawn(process.execPath, [BIN, "serve", "--demo-ports", "0"], { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  await new Promise<void>((ok, fail) => {
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("demo password")) ok();
    });
    child.once("exit", (code) => fail(new Error(`the demo exited (${code}): ${err}`)));
  });
  return child;
}

describe("a start that aborts leaves no in-use marker (issue 12)", () => {
  let dir: string;
  let blocker: Server;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-abort-"));
    blocker = createServer();
    await new Promise<void>((ok) => blocker.listen(0, "127.0.0.1", () => ok()));
  });
  after(async () => {
    await new Promise((ok) => blocker.close(ok));
    await rm(dir, { recursive: true, force: true });
  });

  const tryStart = async (name: string, extra: Record<string, unknown>) => {
    const config = { ...baseTestConfig(join(dir, name)), ...extra };
    const path = join(dir, `${name}.yaml`);
    await writeFile(path, stringify(config));
    return { result: await serveOnce(["--config", path]), dataDir: config.dataDir as string, path };
  };

  it("a port in use: the start fails and the next start does not claim an unclean stop", async () => {
    const busy = (blocker.address() as AddressInfo).port;
    const { result, dataDir } = await tryStart("busy", { listeners: [{ address: "127.0.0.1", port: busy, mode: "mta" }] });
    assert.notEqual(result.code, 0);
    assert.equal(result.timedOut, false);
    assert.equal(existsSync(join(dataDir, "queue/in-use")), false, "no server ran, so no marker");
  });

  it("an unknown process.user: the start fails before anything is written", async () => {
    const { result, dataDir } = await tryStart("nouser", { process: { user: "no-such-user-postern-test" } });
    assert.notEqual(result.code, 0);
    assert.equal(result.timedOut, false);
    assert.equal(existsSync(join(dataDir, "queue/in-use")), false, "no server ran, so no marker");
    assert.equal(existsSync(join(dataDir, "queue")), false, "no recovery ran");
  });
});
