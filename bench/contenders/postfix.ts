/**
 * Postfix from Debian, with Dovecot for SASL, each in a private config folder on loopback only:
 * `postfix -c DIR start` and `dovecot -c DIR/dovecot.conf`. Submission with STARTTLS (and a 465-style
 * wrapper-mode port), relaying to the bench sink, local mail to Maildir through virtual(8).
 * Missing packages are installed when the bench runs as root, else named as the reason to skip.
 */
import { chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { commandExists, countMaildirNew, freePort, run, startDaemon, waitForPort } from "./common.js";
import { LOCAL_DOMAIN, LOCAL_RECIPIENT, type Contender, type ContenderFactory, type ContenderSetup } from "./types.js";

export const postfix: ContenderFactory = {
  name: "Postfix",
  async prepare() {
    if ((await commandExists("postfix")) && (await commandExists("dovecot"))) return null;
    if (process.getuid?.() !== 0) return "postfix and dovecot-core are not installed (run: apt-get install -y postfix dovecot-core)";
    // "No configuration": the package then neither writes /etc/postfix/main.cf nor starts a system postfix.
    await run("sh", ["-c", "echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections"]);
    await run("apt-get", ["install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300", "postfix", "dovecot-core"], {
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    }).catch((err: Error) => err);
    // Whatever the package scripts started system-wide is stopped again: only our private instances listen.
    await run("sh", ["-c", "postfix stop 2>/dev/null; service postfix stop 2>/dev/null; service dovecot stop 2>/dev/null; true"]);
    if ((await commandExists("postfix")) && (await commandExists("dovecot"))) return null;
    return "apt-get install postfix dovecot-core failed";
  },
  async start(setup: ContenderSetup): Promise<Contender> {
    if (process.getuid?.() !== 0) throw new Error("Postfix needs root to start (its master drops privileges)");
    const dir = setup.workDir;
    const [submission, implicit] = [await freePort(), await freePort()];
    const mailRoot = join(dir, "mail");
    for (const d of ["queue", "data", "dovecot-run", "dovecot-state"]) mkdirSync(join(dir, d), { recursive: true });
    mkdirSync(mailRoot, { recursive: true });
    chownSync(mailRoot, 65534, 65534);
    chownSync(join(dir, "data"), postfixUid(), 0);

    await startDovecot(dir, setup);
    writeFileSync(join(dir, "vmailbox"), `${LOCAL_RECIPIENT} ${LOCAL_DOMAIN}/inbox/\n`);
    writeFileSync(join(dir, "main.cf"), mainCf(dir, setup, mailRoot));
    writeFileSync(join(dir, "master.cf"), masterCf(submission, implicit));
    try {
      await startDaemon("postfix", ["-c", dir, "start"], join(dir, "start.log"));
      await waitForPort(submission);
    } catch (err) {
      await run("postfix", ["-c", dir, "stop"]).catch(() => undefined);
      await run("dovecot", ["-c", join(dir, "dovecot.conf"), "stop"]).catch(() => undefined);
      throw new Error(`${(err as Error).message} (see ${dir}/maillog)`);
    }
    const masterPid = () => Number(readFileSync(join(dir, "queue/pid/master.pid"), "latin1").trim());
    const dovecotPid = () => Number(readFileSync(join(dir, "dovecot-run/master.pid"), "latin1").trim());
    return {
      name: "Postfix",
      submissionPort: submission,
      implicitPort: implicit,
      pids: () => [masterPid(), dovecotPid()],
      local: { recipient: LOCAL_RECIPIENT, delivered: () => countMaildirNew(mailRoot) },
      work: "fsync before 250 (cleanup writes the queue file), relays after",
      passwordScheme: "Dovecot passwd-file, SHA512-CRYPT (5,000 rounds), auth_cache off (Debian default)",
      notes: [(await run("postconf", ["-c", dir, "-h", "mail_version"])).stdout.trim(), "process per session (smtpd) + Dovecot auth; memory is their PSS sum"],
      async stop() {
        await run("postfix", ["-c", dir, "stop"]).catch(() => undefined);
        await run("dovecot", ["-c", join(dir, "dovecot.conf"), "stop"]).catch(() => undefined);
        // postfix stop returns before the master is gone; wait until the port is closed for good.
        await waitClosed(submission);
      },
    };
  },
};

function postfixUid(): number {
  const line = readFileSync("/etc/passwd", "latin1")
    .split("\n")
    .find((l) => l.startsWith("postfix:"));
  return Number(line?.split(":")[2] ?? 0);
}

async function waitClosed(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const open = await waitForPort(port, 0).then(
      () => true,
      () => false,
    );
    if (!open) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function startDovecot(dir: string, setup: ContenderSetup): Promise<void> {
  const lines: string[] = [];
  for (const u of setup.users) {
    // openssl passwd -6 is glibc SHA512-CRYPT, Dovecot's recommended crypt scheme.
    const hash = (await runWithInput("openssl", ["passwd", "-6", "-stdin"], u.password)).trim();
    lines.push(`${u.address}:{SHA512-CRYPT}${hash}`);
  }
  writeFileSync(join(dir, "users"), lines.join("\n") + "\n", { mode: 0o644 });
  writeFileSync(
    join(dir, "dovecot.conf"),
    `base_dir = ${dir}/dovecot-run
state_dir = ${dir}/dovecot-state
protocols = none
log_path = ${dir}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = ${dir}/users
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}
service auth {
  unix_listener ${dir}/dovecot-auth {
    mode = 0666
  }
}
`,
  );
  await startDaemon("dovecot", ["-c", join(dir, "dovecot.conf")], join(dir, "start.log"));
  for (let i = 0; i < 100 && !existsSync(join(dir, "dovecot-auth")); i++) await new Promise((r) => setTimeout(r, 50));
}

function runWithInput(cmd: string, args: string[], input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = run(cmd, args);
    child.child.stdin?.end(input + "\n");
    child.then((r) => resolve(r.stdout), reject);
  });
}

function mainCf(dir: string, setup: ContenderSetup, mailRoot: string): string {
  return `compatibility_level = 3.6
queue_directory = ${dir}/queue
data_directory = ${dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
relayhost = [127.0.0.1]:${setup.sinkPort}
smtp_tls_security_level = none
maillog_file = ${dir}/maillog
maillog_file_prefixes = ${dir}
message_size_limit = 60000000
virtual_mailbox_limit = 0
virtual_mailbox_domains = ${LOCAL_DOMAIN}
virtual_mailbox_base = ${mailRoot}
virtual_mailbox_maps = texthash:${dir}/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
smtpd_tls_chain_files = ${setup.tls.key}, ${setup.tls.cert}
smtpd_tls_security_level = may
smtpd_sasl_type = dovecot
smtpd_sasl_path = ${dir}/dovecot-auth
default_process_limit = 1200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_error_sleep_time = 0
biff = no
`;
}

function masterCf(submission: number, implicit: number): string {
  const sasl =
    "-o smtpd_sasl_auth_enable=yes -o smtpd_tls_auth_only=yes -o smtpd_relay_restrictions=permit_sasl_authenticated,reject -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject";
  return `127.0.0.1:${submission} inet n - n - - smtpd -o smtpd_tls_security_level=encrypt ${sasl}
127.0.0.1:${implicit} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes ${sasl}
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
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;
}
