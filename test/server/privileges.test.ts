/**
 * Binding as root, then running as an unprivileged user (process.user). Needs root to create a
 * throwaway system user, so this file defines its test only when run as root (CI runs as root).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, chown, link, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startPostern, type LogLine, type Postern } from "../e2e/helpers/postern.js";
import { RawSmtp } from "../e2e/helpers/raw-smtp.js";
import { createServer } from "node:net";
import { Spool } from "../../src/queue/spool.js";
import { chownTree } from "../../src/server/privileges.js";
import { commitMessage } from "../queue/helpers.js";
import { call } from "../web/helpers/web-client.js";

const run = promisify(execFile);

/** A free loopback port below the first unprivileged one (as root), or undefined when all are unprivileged. */
async function freePrivilegedPort(): Promise<number | undefined> {
  const first = Number((await readFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8").catch(() => "1024")).trim());
  const top = Math.min(first, 1024) - 1;
  const span = Math.max(0, top - Math.max(1, first - 200) + 1);
  // From a random point of the range, so that suites running side by side rarely want the same one.
  const start = Math.floor(Math.random() * span);
  for (let i = 0; i < span; i++) {
    const port = top - ((start + i) % span);
    const free = await new Promise<boolean>((resolve) => {
      const probe = createServer();
      probe.once("error", () => resolve(false));
      probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
    });
    if (free) return port;
  }
  return undefined;
}

if (process.getuid?.() === 0) {
  describe("dropping root after binding", () => {
    const user = `pst${process.pid}`;
    let pg: Postern;
    let base: string;
    let uid: number;
    /** web.port: privileged, so the web listener must be bound before root is dropped (443 in production). */
    let webPort: number | undefined;
    before(async () => {
      await run("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user]);
      uid = Number((await run("id", ["-u", user])).stdout.trim());
      base = await mkdtemp(join(tmpdir(), "postern-priv-"));
      await chmod(base, 0o755); // the unprivileged user must reach its data directory
      // A port found free can be taken before the server binds it (another suite on this machine): try another.
      for (let attempt = 1; ; attempt++) {
        webPort = await freePrivilegedPort();
        try {
          pg = await startPostern({
            config: {
              dataDir: join(base, "data"),
              delivery: { maildir: join(base, "data/mail/{domain}/{localpart}") },
              process: { user },
              ...(webPort !== undefined ? { web: { address: "127.0.0.1", port: webPort } } : {}),
            },
            users: [{ address: "jane@example.org", password: "x" }],
          });
          break;
        } catch (err) {
          if (attempt >= 3 || !/already in use/.test(String(err))) throw err;
        }
      }
    });
    after(async () => {
      await pg?.cleanup();
      await rm(base, { recursive: true, force: true });
      await run("userdel", [user]).catch(() => undefined);
    });

    it("runs as the configured user and still queues and delivers mail", async () => {
      const dropped = await pg.waitForLog((l) => l.event === "privileges-dropped");
      assert.equal(dropped.uid, uid);
      const status = await readFile(`/proc/${pg.pid}/status`, "utf8");
      const uids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status)!.slice(1).map(Number);
      assert.deepEqual(uids, [uid, uid, uid, uid]); // real, effective, saved, filesystem: no way back to root
      assert.equal((await stat(join(base, "data/queue"))).uid, uid);

      const c = await RawSmtp.open(pg.ports.mta);
      await c.reply();
      await c.expect("EHLO client.test", 250);
      await c.expect("MAIL FROM:<someone@example.net>", 250);
      await c.expect("RCPT TO:<jane@example.org>", 250);
      await c.expect("DATA", 354);
      await c.expect("Subject: after the drop\r\n\r\nhello\r\n.", 250);
      c.close();
      await pg.waitForLog((l) => l.event === "maildir-stored");
      const dir = join(base, "data/mail/example.org/jane/new");
      const [file] = await readdir(dir);
      assert.equal((await stat(join(dir, file!))).uid, uid);
    });

    it("binds the web listener's privileged port as root, and serves it as the user", async (t) => {
      if (webPort === undefined) return t.skip("every port is unprivileged here (net.ipv4.ip_unprivileged_port_start)");
      await pg.waitForLog((l) => l.event === "privileges-dropped");
      const listening = await pg.waitForLog((l) => l.event === "web-listening");
      assert.equal(listening.port, webPort);
      const reply = await call(webPort, "GET", "/ui/login");
      assert.equal(reply.status, 200);
      assert.match(reply.body, /<form/);
    });
  });

  it("chownTree: a FIFO does not hang it, sockets and links are skipped, plain entries change owner (11.9)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "postern-chown-"));
    try {
      await mkdir(join(dir, "a/b"), { recursive: true });
      await writeFile(join(dir, "a/b/file"), "x");
      await run("mkfifo", [join(dir, "a/fifo")]);
      const unix = createServer();
      await new Promise<void>((ok) => unix.listen(join(dir, "a/sock"), () => ok()));
      await symlink("/etc", join(dir, "a/etc-link"));
      const report = chownTree(dir, 65534, 65534);
      unix.close();
      for (const p of ["", "a", "a/b", "a/b/file"]) assert.equal((await stat(join(dir, p))).uid, 65534, p);
      assert.equal(report.changed, 4);
      assert.deepEqual(report.skipped.map((s) => `${s.path.slice(dir.length + 1)}: ${s.reason}`).sort(), [
        "a/etc-link: symbolic link (not followed)",
        "a/fifo: not a regular file or directory",
        "a/sock: socket",
      ]);
      assert.equal((await stat("/etc")).uid, 0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  // docs/SECURITY.md 11.9: root walks a tree the unprivileged user owns (and may have filled with
  // links), and nothing may run as root that does not have to.
  describe("the privilege drop walks the data directory safely, and nothing is served before it", () => {
    const user = `psd${process.pid}`;
    let pg: Postern;
    let base: string;
    let uid: number;
    before(async () => {
      await run("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user]);
      uid = Number((await run("id", ["-u", user])).stdout.trim());
      const gid = Number((await run("id", ["-g", user])).stdout.trim());
      base = await mkdtemp(join(tmpdir(), "postern-priv-"));
      await chmod(base, 0o755);
      const data = join(base, "data");
      // Root's files outside the data directory, and the traps a previous (compromised) run
      // could have left inside it: links to them. Same filesystem, so the hard link is real.
      await mkdir(join(base, "outside"), { mode: 0o700 });
      await writeFile(join(base, "outside/secret"), "root's\n", { mode: 0o600 });
      await writeFile(join(base, "outside/linked"), "root's too\n", { mode: 0o600 });
      await mkdir(join(data, "queue"), { recursive: true, mode: 0o700 });
      await symlink(join(base, "outside/secret"), join(data, "file-link"));
      await symlink(join(base, "outside"), join(data, "dir-link"));
      await link(join(base, "outside/linked"), join(data, "queue/hard-link"));
      // A message already queued when the server starts: its delivery must run as the user.
      const spool = new Spool(join(data, "queue"));
      await spool.init();
      await commitMessage(spool, "Subject: queued before the start\r\n\r\nhello\r\n", ["jane@example.org"]);
      await spool.close();
      // Mail outside the data directory, so the start's chown cannot hide who wrote it.
      await mkdir(join(base, "mail"), { mode: 0o755 });
      await chown(join(base, "mail"), uid, gid);
      pg = await startPostern({
        config: { dataDir: data, delivery: { maildir: join(base, "mail/{domain}/{localpart}") }, process: { user } },
        users: [{ address: "jane@example.org", password: "x" }],
      });
    });
    after(async () => {
      await pg?.cleanup();
      await rm(base, { recursive: true, force: true });
      await run("userdel", [user]).catch(() => undefined);
    });

    it("links in the data directory are not followed: root's files outside keep their owner (11.9)", async () => {
      await pg.waitForLog((l) => l.event === "privileges-dropped");
      for (const f of ["outside", "outside/secret", "outside/linked"]) assert.equal((await stat(join(base, f))).uid, 0, `${f} must still be root's`);
      assert.equal((await stat(join(base, "data/queue"))).uid, uid, "the data directory itself is handed over");
      const skipped = (await pg.waitForLog((l) => l.event === "chown-skipped")).skipped as { path: string; reason: string }[];
      assert.deepEqual(skipped.map((s) => s.path.slice(join(base, "data").length + 1)).sort(), ["dir-link", "file-link", "queue/hard-link"]);
    });

    it("root is dropped before the queue starts or any listener serves, and queued mail is delivered as the user (11.9)", async () => {
      // Awaited, not read: a line may reach the test's end of the stdout pipe a moment after the server acted on it.
      const at = async (pred: (l: LogLine) => boolean) => pg.logs.indexOf(await pg.waitForLog(pred));
      const dropped = await at((l) => l.event === "privileges-dropped");
      const after = (what: string, i: number) => assert.ok(i > dropped, `${what} (log line ${i}) must come after the privilege drop (log line ${dropped})`);
      after("control socket", await at((l) => l.event === "control-listening"));
      after("queue start", await at((l) => l.event === "queue-started"));
      after("first listener", await at((l) => l.event === "listening"));
      after("first delivery", await at((l) => l.event === "maildir-stored"));
      const dir = join(base, "mail/example.org/jane/new");
      const [file] = await readdir(dir);
      assert.equal((await stat(join(dir, file!))).uid, uid, "delivered by the unprivileged user");
      assert.equal((await stat(join(base, "data/users.sqlite"))).uid, uid);
    });
  });
}
