/** The `postern` command line. Each subcommand lives in its own file. */
import { Command } from "commander";
import { ConfigError } from "../config/load.js";
import { serveCommand } from "./serve.js";
import {
  appPasswordAdd,
  appPasswordList,
  appPasswordRevoke,
  userAdd,
  userDel,
  userList,
  userPasswd,
  userRelayClient,
  userRequireAppPasswords,
} from "./user.js";
import { configCheck } from "./config-check.js";
import { normalizeArgv, registerToolbox } from "./toolbox.js";
import { queueDelete, queueFlush, queueHold, queueList, queueRelease, queueShow } from "./queue.js";
import { dkimActivate, dkimDns, dkimKeygen, dkimList, dkimRotate } from "./dkim.js";
import { dnsCommand } from "./dns.js";
import { storeImport, storeMigrate } from "./store.js";
import { aliasDel, aliasList, aliasSet } from "./alias.js";
import { storeImportSpool } from "./store-import-spool.js";

const program = new Command();
program.name("postern").description("Authenticated SMTP submission server and MTA").version("0.1.0");

const configOption = ["-c, --config <file>", "YAML configuration file (default: $POSTERN_CONFIG, else /etc/postern/postern.yaml)"] as const;

program
  .command("serve")
  .description("run the SMTP listeners and the queue (with no configuration at all: the embedded demo)")
  .option(...configOption)
  .option("--demo-ports <base>", "the demo listens on BASE (mta), BASE+1 (submission), BASE+2 (submissions); 0: any free ports")
  .action(serveCommand);

const user = program
  .command("user")
  .description("manage users in the built-in store: SQLite, or PostgreSQL with store.backend postgres (auth.backend: sqlite)");
user
  .command("add <address>")
  .description("add a user (password from a prompt, or stdin with --password-stdin)")
  .option(...configOption)
  .option("--password-stdin", "read the password from stdin")
  .option("--sender <address...>", "extra addresses or @domains this user may send as")
  .option("--no-password", "a mailbox entry only (auth.backend dovecot or saslauthd checks the password)")
  .option("--relay-client", "a mail server or app relaying for its @domains: hosts under them too, and its MAILER-DAEMON reports")
  .option("--require-app-passwords", "refuse the main password for SMTP: devices log in with app passwords only")
  .action(userAdd);
user
  .command("require-app-passwords <address> <state>")
  .description("on: the main password is refused for SMTP, only app passwords log in; off; default: auth.requireAppPasswords")
  .option(...configOption)
  .action(userRequireAppPasswords);
const appPassword = user.command("app-password").description("per-device passwords for SMTP submission (generated, shown once, revocable)");
appPassword
  .command("add <address>")
  .description("generate an app password: printed alone on stdout, shown only once")
  .requiredOption("--name <name>", "what it is for, e.g. phone or laptop")
  .option(...configOption)
  .action(appPasswordAdd);
appPassword
  .command("list <address>")
  .description("list app passwords: name, created, last used, from where")
  .option(...configOption)
  .option("--json", "machine-readable output")
  .action(appPasswordList);
appPassword
  .command("revoke <address> <name>")
  .description("revoke an app password (at once, also for a running server)")
  .option(...configOption)
  .action(appPasswordRevoke);
user
  .command("relay-client <address> <state>")
  .description("mark a user as a relay client (on) or a normal user (off); see --relay-client")
  .option(...configOption)
  .action(userRelayClient);
user
  .command("del <address>")
  .description("delete a user")
  .option(...configOption)
  .action(userDel);
user
  .command("passwd <address>")
  .description("set a new password")
  .option(...configOption)
  .option("--password-stdin", "read the password from stdin")
  .action(userPasswd);
user
  .command("list")
  .description("list users")
  .option(...configOption)
  .option("--json", "machine-readable output")
  .action(userList);

const queue = program.command("queue").description("inspect and steer the mail queue (needs the running server to change it)");
queue
  .command("list")
  .description("list queued messages (mailq)")
  .option(...configOption)
  .option("--json", "machine-readable output")
  .action(queueList);
queue
  .command("show <id>")
  .description("show a message's envelope and headers")
  .option(...configOption)
  .option("--json", "machine-readable output")
  .action(queueShow);
queue
  .command("flush [id]")
  .description("attempt delivery now, ignoring back-off (postqueue -f)")
  .option(...configOption)
  .option("--json", "machine-readable output")
  .action(queueFlush);
queue
  .command("delete [id]")
  .description("remove a message without a bounce (postsuper -d)")
  .option(...configOption)
  .option("--all-deferred", "remove every deferred message")
  .option("--json", "machine-readable output")
  .action(queueDelete);
queue
  .command("hold <id>")
  .description("keep a message from delivery until released (survives restarts)")
  .option(...configOption)
  .option("--json", "machine-readable output")
  .action(queueHold);
queue
  .command("release <id>")
  .description("release a held message")
  .option(...configOption)
  .option("--json", "machine-readable output")
  .action(queueRelease);

const dkim = program.command("dkim").description('DKIM signing keys (README "DKIM signing")');
dkim
  .command("keygen <domain>")
  .description("make signing keys: Ed25519 and RSA-2048 unless --algorithm; the first of each algorithm signs at once")
  .option(...configOption)
  .option("--selector <name>", "selector for the key (with --algorithm; default <yyyymm>e / <yyyymm>r)")
  .option("--algorithm <name>", "ed25519 | rsa (default: both)")
  .action(dkimKeygen);
dkim
  .command("dns <domain>")
  .description("print the TXT records to publish, in zone-file form, one per line (retired keys during their grace period too)")
  .option(...configOption)
  .action(dkimDns);
dkim
  .command("rotate <domain>")
  .description("make the next selectors as pending: they sign only once activated")
  .option(...configOption)
  .option("--algorithm <name>", "ed25519 | rsa (default: those of the active keys)")
  .action(dkimRotate);
dkim
  .command("activate <domain> [selector]")
  .description("sign with a pending key from now on; the active key of its algorithm retires")
  .option(...configOption)
  .option("--check-dns", "activate the pending keys whose records the configured resolvers (dns.servers) return")
  .action(dkimActivate);
dkim
  .command("list [domain]")
  .description("list the keys and their states")
  .option(...configOption)
  .option("--json", "machine-readable output")
  .action(dkimList);

program
  .command("dns <domain>")
  .description("print every DNS record to publish for one of our domains, in zone-file form (MX, SRV, autoconfig, SPF, DKIM, DMARC, MTA-STS, TLS-RPT)")
  .option(...configOption)
  .action(dnsCommand);

const store = program.command("store").description("the PostgreSQL store shared by several nodes (store.backend: postgres)");
store
  .command("migrate")
  .description("create or upgrade the database schema (safe on several nodes at once)")
  .option(...configOption)
  .action(storeMigrate);
store
  .command("import")
  .description("copy users and app passwords (secrets as stored) from a SQLite user store, and aliases from an alias file; existing ones are skipped")
  .option("--from-sqlite <path>", "the SQLite user store, e.g. /var/lib/postern/users.sqlite")
  .option("--aliases <file>", "an alias file (aliases.file syntax), e.g. /etc/postern/aliases")
  .option(...configOption)
  .action(storeImport);
store
  .command("import-spool")
  .description("copy the messages of a stopped server's file spool (envelope and bytes) into the PostgreSQL queue; already imported ids are skipped")
  .requiredOption("--spool <dir>", "the spool, e.g. /var/lib/postern/queue")
  .option(...configOption)
  .action(storeImportSpool);

const alias = program.command("alias").description("the cluster's aliases in PostgreSQL (store.backend: postgres); otherwise edit aliases.file");
alias
  .command("list")
  .description("every alias, one per line in the alias file's syntax")
  .option(...configOption)
  .action(aliasList);
alias
  .command("set <alias> <targets...>")
  .description("add an alias or replace its targets (alias file syntax: sales@example.org, postmaster, @example.org for a catch-all)")
  .option(...configOption)
  .action(aliasSet);
alias
  .command("del <alias>")
  .description("remove an alias")
  .option(...configOption)
  .action(aliasDel);

const config = program.command("config").description("configuration tools");
config
  .command("check")
  .description("validate and print the effective configuration")
  .option(...configOption)
  .action(configCheck);

registerToolbox(program);

program.parseAsync(normalizeArgv(process.argv)).catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`postern: ${err.message}\n${err.problems.map((p) => `  ${p}\n`).join("")}`);
    process.exit(78); // EX_CONFIG
  }
  process.stderr.write(`postern: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
