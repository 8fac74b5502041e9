/**
 * A private Postfix instance for interoperability tests (the Debian package `postfix`): its own
 * config and queue folder, `postfix -c DIR start-fg`, smtpd on one 127.0.0.1 ephemeral port,
 * everything else relayed to `relayhost` — as bench/contenders/postfix.ts runs it, minus Dovecot.
 * Its log goes to stdout (maillog_file = /dev/stdout), so tests await log lines, not time.
 * Needs root (the master drops privileges to the `postfix` user).
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { freePort } from "../../helpers/test-config.js";

const POSTFIX = "/usr/sbin/postfix";

/** Why a Postfix test cannot run here, or undefined when it can. */
export function postfixUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "Postfix needs root to start (its master drops privileges)";
  try {
    accessSync(POSTFIX, constants.X_OK);
  } catch {
    return "postfix is not installed (apt-get install -y postfix libsasl2-modules)";
  }
  if (idOf("/etc/passwd", "postfix") === undefined || idOf("/etc/group", "postdrop") === undefined) return "no postfix user or postdrop group";
  return undefined;
}

export interface PostfixOptions {
  /** myhostname; myorigin defaults to it, so its MAILER-DAEMON is MAILER-DAEMON@<hostname>. */
  hostname: string;
  /** Everything leaves through this port on 127.0.0.1 with STARTTLS required and SASL PLAIN. */
  relayPort: number;
  login: string;
  password: string;
  /** transport_maps entries, e.g. { "fail.example": "error:5.1.1 no such mailbox" }. */
  transport?: Record<string, string>;
}

export interface PrivatePostfix {
  dir: string;
  /** smtpd on 127.0.0.1 (mynetworks = 127.0.0.1/32: may relay). */
  smtpPort: number;
  logs: string[];
  /** Resolves with the first log line (past or future) matching. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

function idOf(file: string, name: string): number | undefined {
  const line = readFileSync(file, "latin1")
    .split("\n")
    .find((l) => l.startsWith(`${name}:`));
  return line === undefined ? undefined : Number(line.split(":")[2]);
}

function run(cmd: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, output: stdout + stderr }));
  });
}

export async function startPostfix(opts: PostfixOptions): Promise<PrivatePostfix> {
  const uid = idOf("/etc/passwd", "postfix")!;
  const postdrop = idOf("/etc/group", "postdrop")!;
  const dir = await mkdtemp(join(tmpdir(), "postern-postfix-"));
  await chmod(dir, 0o755); // the postfix user walks into queue/ and data/
  const queue = join(dir, "queue");
  await mkdir(queue, { mode: 0o755 });
  // The queue layout of /etc/postfix/postfix-files, made here so `quick-start` can skip the slow
  // integrity check (seconds on a loaded machine) that would otherwise create it.
  for (const d of ["active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"]) {
    await mkdir(join(queue, d), { mode: 0o700 });
    await chown(join(queue, d), uid, 0);
  }
  await mkdir(join(queue, "maildrop"));
  await chown(join(queue, "maildrop"), uid, postdrop);
  await chmod(join(queue, "maildrop"), 0o730);
  await mkdir(join(queue, "public"));
  await chown(join(queue, "public"), uid, postdrop);
  await chmod(join(queue, "public"), 0o710);
  await mkdir(join(queue, "pid"), { mode: 0o755 });
  await mkdir(join(dir, "data"), { mode: 0o700 });
  await chown(join(dir, "data"), uid, 0);
  await writeFile(join(queue, "quick-start"), "");

  const smtpPort = await freePort();
  const relayhost = `[127.0.0.1]:${opts.relayPort}`;
  await writeFile(join(dir, "sasl_passwd"), `${relayhost} ${opts.login}:${opts.password}\n`, { mode: 0o600 });
  const transport = Object.entries(opts.transport ?? {})
    .map(([k, v]) => `${k} ${v}\n`)
    .join("");
  await writeFile(join(dir, "transport"), transport);
  await writeFile(
    join(dir, "main.cf"),
    `compatibility_level = 3.6
queue_directory = ${queue}
data_directory = ${dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = ${opts.hostname}
mydestination =
local_transport = error:5.1.1 no local delivery on this host
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
smtpd_relay_restrictions = permit_mynetworks, reject
# Accept what the transport table sends to error(8), so that it bounces after acceptance.
smtpd_reject_unlisted_recipient = no
relayhost = ${relayhost}
transport_maps = texthash:${dir}/transport
smtp_tls_security_level = encrypt
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = texthash:${dir}/sasl_passwd
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
smtp_sasl_mechanism_filter = plain
smtputf8_enable = no
maillog_file = /dev/stdout
biff = no
`,
  );
  await writeFile(
    join(dir, "master.cf"),
    `127.0.0.1:${smtpPort} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`,
  );

  const logs: string[] = [];
  const waiters: { pattern: RegExp; resolve: (l: string) => void }[] = [];
  // Through a real pipe: Node's "pipe" is a socketpair, and Postfix cannot open /dev/stdout on a
  // socket (ENXIO), so `| cat` gives it a FIFO to log to.
  const child: ChildProcess = spawn("sh", ["-c", '"$0" -c "$1" start-fg 2>&1 | cat', POSTFIX, dir], { stdio: ["ignore", "pipe", "pipe"] });
  child.once("exit", (code, sig) => logs.push(`(postfix start-fg exited: ${code ?? sig})`));
  const exited = new Promise<void>((ok) => child.once("exit", () => ok()));
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on("line", (line) => {
      logs.push(line);
      for (const w of [...waiters]) {
        if (w.pattern.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    });
  }
  const waitForLog = (pattern: RegExp, timeoutMs = 30_000): Promise<string> => {
    const found = logs.find((l) => pattern.test(l));
    if (found) return Promise.resolve(found);
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`Postfix never logged ${pattern}; the last lines:\n${logs.slice(-10).join("\n")}`)), timeoutMs);
      timer.unref();
      waiters.push({ pattern, resolve: (l) => (clearTimeout(timer), ok(l)) });
    });
  };

  // The master runs in its own session: a test process that dies must not leave it behind.
  let masterPid: number | undefined;
  const killMaster = () => {
    if (masterPid !== undefined) {
      try {
        process.kill(masterPid, "SIGTERM");
      } catch {
        // already gone
      }
    }
  };
  process.once("exit", killMaster);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      const r = await run(POSTFIX, ["-c", dir, "stop"]);
      if (r.code !== 0) killMaster();
      await exited; // start-fg returns once the master has exited
    }
    process.removeListener("exit", killMaster);
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const started = waitForLog(/postfix\/master\[(\d+)\]: daemon started/);
    const early = exited.then(() => {
      throw new Error(`postfix start-fg exited:\n${logs.join("\n")}`);
    });
    // Whichever loses the race must not surface later as an unhandled rejection.
    started.catch(() => undefined);
    early.catch(() => undefined);
    const line = await Promise.race([started, early]);
    masterPid = Number(/master\[(\d+)\]/.exec(line)![1]);
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return { dir, smtpPort, logs, waitForLog, stop };
}
