/** The `postern` command line. Each subcommand lives in its own file. */
import { Command } from "commander";
import { ConfigError } from "../config/load.js";
import { serveCommand } from "./serve.js";
import { userAdd, userDel, userList, userPasswd } from "./user.js";
import { configCheck } from "./config-check.js";

const program = new Command();
program.name("postern").description("Authenticated SMTP submission server and MTA").version("0.1.0");

const configOption = ["-c, --config <file>", "YAML configuration file (default: the embedded demo configuration)"] as const;

program.command("serve").description("run the SMTP listeners and the queue").option(...configOption).action(serveCommand);

const user = program.command("user").description("manage users in the SQLite store");
user
  .command("add <address>")
  .description("add a user (password from a prompt, or stdin with --password-stdin)")
  .option(...configOption)
  .option("--password-stdin", "read the password from stdin")
  .option("--sender <address...>", "extra addresses or @domains this user may send as")
  .action(userAdd);
user.command("del <address>").description("delete a user").option(...configOption).action(userDel);
user
  .command("passwd <address>")
  .description("set a new password")
  .option(...configOption)
  .option("--password-stdin", "read the password from stdin")
  .action(userPasswd);
user.command("list").description("list users").option(...configOption).option("--json", "machine-readable output").action(userList);

const config = program.command("config").description("configuration tools");
config.command("check").description("validate and print the effective configuration").option(...configOption).action(configCheck);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`postern: ${err.message}\n${err.problems.map((p) => `  ${p}`).join("\n")}\n`);
    process.exit(78); // EX_CONFIG
  }
  process.stderr.write(`postern: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
