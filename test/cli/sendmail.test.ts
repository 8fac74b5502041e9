/**
 * `postern sendmail` from a shell script into a running Postern: local mail lands in the Maildir,
 * remote mail reaches a real SMTP sink through the queue, over the local socket only.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BIN, ROOT, startPostern, type Postern } from "../e2e/helpers/postern.js";
import { startSink, type Sink } from "../delivery/helpers/sink.js";

function script(pg: Postern, text: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      "sh",
      ["-c", text],
      { cwd: ROOT, env: { ...process.env, SENDMAIL: `${process.execPath} ${BIN} sendmail -c ${pg.configPath}` } },
      (err, stdout, stderr) => {
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

async function maildir(pg: Postern, local: string): Promise<string[]> {
  const dir = join(pg.dir, "mail/example.org", local, "new");
  const names = await readdir(dir).catch(() => []);
  return Promise.all(names.map((n) => readFile(join(dir, n), "utf8")));
}

describe("postern sendmail", () => {
  let pg: Postern;
  let sink: Sink;
  before(async () => {
    sink = await startSink();
    pg = await startPostern({
      config: { localSubmit: { socket: "sendmail.sock" }, relay: { smarthost: `127.0.0.1:${sink.port}` } },
      users: [{ address: "jane@example.org", password: "x" }],
    });
  });
  after(async () => {
    await pg.cleanup();
    await sink.close();
  });

  it("the socket is a unix socket only owner and group can use", async () => {
    const st = await stat(join(pg.dir, "data/sendmail.sock"));
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);
  });

  it("a script's mail reaches the local Maildir with trace fields, Date, Message-ID and From added", async () => {
    const r = await script(pg, `printf 'Subject: nightly backup\\n\\nall good\\n.\\nnot part of it\\n' | $SENDMAIL jane`);
    assert.equal(r.code, 0, r.stderr);
    await pg.waitForLog((l) => l.event === "maildir-stored" && l.to === "jane@example.org");
    const [msg] = await maildir(pg, "jane");
    assert.ok(msg);
    assert.match(msg, /^Received: by mail\.example\.org \(Postern\) with local id \S+\r\n\t\(user \S+ uid \d+\);/m);
    assert.match(msg, /^Date: \w{3}, /m);
    assert.match(msg, /^Message-ID: <[^>]+@mail\.example\.org>\r$/m);
    assert.match(msg, /^From: <[^@>]+@example\.org>\r$/m);
    assert.match(msg, /^Subject: nightly backup\r\n\r\nall good\r\n$/m);
    // Without -i, a line with a single dot ends the message, as sendmail does.
    assert.doesNotMatch(msg, /not part of it/);
    const queued = await pg.waitForLog((l) => l.event === "queued" && l.via === "local");
    assert.deepEqual(queued.to, ["jane@example.org"]);
  });

  it("-t takes recipients from the headers and removes Bcc:; -f sets the sender; -oi keeps dot lines", async () => {
    const r = await script(
      pg,
      `printf 'From: Cron <cron@example.org>\\nTo: Remote <remote@example.net>\\nBcc: hidden@example.com\\nSubject: report\\n\\nline\\n.\\nafter the dot\\n' | $SENDMAIL -oi -t -f bounces@example.org`,
    );
    assert.equal(r.code, 0, r.stderr);
    await sink.waitForMessages(1, 15_000);
    const all = sink.messages.flatMap((m) => m.to).sort();
    if (all.length < 2) await sink.waitForMessages(2, 15_000);
    const got = sink.messages.flatMap((m) => m.to).sort();
    assert.deepEqual(got, ["hidden@example.com", "remote@example.net"]);
    const m = sink.messages[0]!;
    assert.equal(m.from, "bounces@example.org");
    const data = m.data.toString("utf8");
    assert.doesNotMatch(data, /^Bcc:/im);
    assert.match(data, /^From: Cron <cron@example\.org>\r$/m);
    assert.match(data, /\r\n\.\r\nafter the dot\r\n$/); // the dot line survived (-oi)
  });

  it("refuses an address that is not an RFC 5321 path, with sendmail's EX_NOUSER", async () => {
    const r = await script(pg, `printf 'x\\n' | $SENDMAIL '"bad@example.com"@example.org'`);
    assert.equal(r.code, 67, r.stderr);
    assert.match(r.stderr, /bad recipient address/);
  });
});

/** `postern sendmail` as another local user (root runs the test; cron and PHP run as anyone). */
function asUser(uid: number, gid: number, args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [BIN, "sendmail", ...args],
      { cwd: ROOT, uid, gid, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env } },
      (err, stdout, stderr) => {
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
    child.stdin?.end("Subject: test\n\nhello\n");
  });
}

const NOBODY = { uid: 65534, gid: 65534 };

describe("postern sendmail: configuration and permissions", () => {
  let pg: Postern;
  let pub: string;
  before(async () => {
    pub = await mkdtemp(join(tmpdir(), "postern-sendmail-pub-"));
    await chmod(pub, 0o755);
    pg = await startPostern({
      config: { localSubmit: { socket: join(pub, "sendmail.sock"), mode: "0660", group: "postdrop" } },
      users: [{ address: "jane@example.org", password: "x" }],
    });
  });
  after(async () => {
    await pg?.cleanup();
    await rm(pub, { recursive: true, force: true });
  });

  const me = { uid: process.getuid!(), gid: process.getgid!() };

  it("reads only localSubmit.socket from the config: the rest (a password, even an invalid key) is neither needed nor checked", async () => {
    const path = join(pub, "only-socket.yaml");
    await writeFile(
      path,
      `localSubmit: { socket: ${join(pub, "sendmail.sock")} }\nrelay: { smarthost: { host: x, auth: { username: u, password: pw } } }\nnotAKey: 1\n`,
    );
    const r = await asUser(me.uid, me.gid, ["-c", path, "jane@example.org"]);
    assert.equal(r.code, 0, r.stderr);
    const viaEnv = await asUser(me.uid, me.gid, ["jane@example.org"], {
      POSTERN_SOCKET: join(pub, "sendmail.sock"),
      POSTERN_CONFIG: join(pub, "missing.yaml"),
    });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
  });

  it("a missing configuration exits 69 (not configured), one without localSubmit.socket too", async () => {
    const missing = await asUser(me.uid, me.gid, ["jane@example.org"], { POSTERN_CONFIG: join(pub, "missing.yaml") });
    assert.equal(missing.code, 69, missing.stderr);
    assert.equal(
      missing.stderr,
      `sendmail: local submission is not configured: ${join(pub, "missing.yaml")} does not exist; give the socket with --socket PATH or $POSTERN_SOCKET\n`,
    );
    const path = join(pub, "no-socket.yaml");
    await writeFile(path, "hostname: mail.example.org\n");
    const off = await asUser(me.uid, me.gid, ["-c", path, "jane@example.org"]);
    assert.equal(off.code, 69);
    assert.match(off.stderr, /local submission is not configured \(no localSubmit\.socket in /);
  });

  if (process.getuid?.() === 0) {
    it("a configuration the user may not read exits 78 and names the way around it", async () => {
      const path = join(pub, "private.yaml");
      await writeFile(path, `localSubmit: { socket: ${join(pub, "sendmail.sock")} }\n`, { mode: 0o600 });
      const r = await asUser(NOBODY.uid, NOBODY.gid, ["-c", path, "jane@example.org"]);
      assert.equal(r.code, 78, r.stderr);
      assert.equal(
        r.stderr,
        `sendmail: cannot read ${path} (it may hold secrets and be private to the server); give the socket with --socket PATH or $POSTERN_SOCKET\n`,
      );
    });

    it("a user outside the socket's group exits 77 and is told to join postdrop", async () => {
      const r = await asUser(NOBODY.uid, NOBODY.gid, ["--socket", join(pub, "sendmail.sock"), "jane@example.org"]);
      assert.equal(r.code, 77, r.stderr);
      assert.equal(
        r.stderr,
        `sendmail: permission denied on ${join(pub, "sendmail.sock")} (group postdrop, mode 0660): add the user nobody to group postdrop\n`,
      );
    });
  }
});
