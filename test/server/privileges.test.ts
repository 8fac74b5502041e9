/**
 * Binding as root, then running as an unprivileged user (process.user). Needs root to create a
 * throwaway system user, so this file defines its test only when run as root (CI runs as root).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, mkdtemp, readFile, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startPostern, type Postern } from "../e2e/helpers/postern.js";
import { RawSmtp } from "../e2e/helpers/raw-smtp.js";

const run = promisify(execFile);

if (process.getuid?.() === 0) {
  describe("dropping root after binding", () => {
    const user = `pst${process.pid}`;
    let pg: Postern;
    let base: string;
    let uid: number;
    before(async () => {
      await run("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user]);
      uid = Number((await run("id", ["-u", user])).stdout.trim());
      base = await mkdtemp(join(tmpdir(), "postern-priv-"));
      await chmod(base, 0o755); // the unprivileged user must reach its data directory
      pg = await startPostern({
        config: { dataDir: join(base, "data"), delivery: { maildir: join(base, "data/mail/{domain}/{localpart}") }, process: { user } },
        users: [{ address: "jane@example.org", password: "x" }],
      });
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
  });
}
