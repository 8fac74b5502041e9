/**
 * A real Dovecot LMTP server for tests (apt-get install dovecot-core dovecot-lmtpd): its own
 * config, state and Maildirs in a temp dir, listening on a unix socket there and on 127.0.0.1
 * with an ephemeral port. Users come from a passwd-file; "full@…" has a 1-byte quota so that a
 * per-recipient failure after DATA can be seen (RFC 2033 §4.2).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, watch } from "node:fs";
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect, createServer, type AddressInfo, type NetConnectOpts } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Dovecot {
  dir: string;
  socket: string;
  port: number;
  maildir(user: string, domain: string): string;
  log(): Promise<string>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, "127.0.0.1", () => ok()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((ok) => s.close(() => ok()));
  return port;
}

/** Resolves once `name` exists in `dir` (the listener socket: Dovecot is accepting). */
function appears(dir: string, name: string, child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const watcher = watch(dir, () => check());
    const timer = setTimeout(() => done(new Error(`dovecot: ${name} did not appear`)), timeoutMs);
    const onExit = (code: number | null) => done(new Error(`dovecot exited early (${code})`));
    child.once("exit", onExit);
    function done(err?: Error) {
      watcher.close();
      clearTimeout(timer);
      child.off("exit", onExit);
      if (err) reject(err);
      else resolve();
    }
    function check() {
      if (existsSync(join(dir, name))) done();
    }
    check();
  });
}

/**
 * Resolves once `target` answers with an LMTP greeting. The socket file appears at bind(), a moment
 * before Dovecot's listen() (and its TCP listener may come later still): a connection in between is
 * refused, so readiness is a greeting, retried after a refusal, never a sleep of a guessed length.
 */
async function greets(target: NetConnectOpts, child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(target);
      c.setTimeout(2000, () => (c.destroy(), resolve(false)));
      c.once("data", (d) => (c.destroy(), resolve(d.toString().startsWith("220"))));
      c.once("error", () => resolve(false));
    });
    if (ok) return;
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`dovecot exited early (${child.exitCode ?? child.signalCode})`);
    if (Date.now() > deadline) throw new Error(`dovecot: no LMTP greeting on ${JSON.stringify(target)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function startDovecot(users: string[]): Promise<Dovecot> {
  const dir = await mkdtemp(join(tmpdir(), "postern-dovecot-"));
  await chmod(dir, 0o755);
  const port = await freePort();
  // Dovecot refuses uid 0 for mail; as root the mail belongs to nobody.
  const uid = process.getuid!() === 0 ? 65534 : process.getuid!();
  const gid = process.getuid!() === 0 ? 65534 : process.getgid!();
  const mail = join(dir, "mail");
  await mkdir(mail);
  if (process.getuid!() === 0) await chown(mail, uid, gid);
  await writeFile(join(dir, "users"), users.map((u) => `${u}:{PLAIN}unused::::::${u.startsWith("full@") ? "userdb_quota_rule=*:storage=1B" : ""}\n`).join(""));
  const socket = join(dir, "lmtp.sock");
  await writeFile(
    join(dir, "dovecot.conf"),
    `protocols = lmtp
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
ssl = no
listen = 127.0.0.1
first_valid_uid = ${uid}
mail_location = maildir:${mail}/%d/%n/Maildir
mail_plugins = quota
plugin {
  quota = maildir:User quota
}
passdb {
  driver = passwd-file
  args = ${dir}/users
}
userdb {
  driver = passwd-file
  args = ${dir}/users
  default_fields = uid=${uid} gid=${gid} home=${mail}/%d/%n
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${port}
  }
  unix_listener ${socket} {
    mode = 0666
  }
}
`,
  );
  const bin = existsSync("/usr/sbin/dovecot") ? "/usr/sbin/dovecot" : "dovecot";
  const child = spawn(bin, ["-F", "-c", join(dir, "dovecot.conf")], { stdio: ["ignore", "ignore", "pipe"] });
  await appears(dir, "lmtp.sock", child);
  await greets({ path: socket }, child);
  await greets({ host: "127.0.0.1", port }, child);
  return {
    dir,
    socket,
    port,
    maildir: (user, domain) => join(mail, domain, user, "Maildir"),
    log: () => readFile(join(dir, "dovecot.log"), "utf8").catch(() => ""),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
