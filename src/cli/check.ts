/** `postern check HOST[:PORT]`: audit an SMTP server; exit 2 when any item FAILs. */
import { readFileSync } from "node:fs";
import { runCheck } from "../check/run.js";
import type { CheckItem, CheckTarget } from "../check/types.js";
import { isListenerMode, LISTENER_MODES } from "../base/listener-mode.js";
import { readPassword } from "./secret-input.js";

export interface CheckOptions {
  json?: boolean;
  mode?: string;
  domain?: string;
  relayTo: string;
  ehlo: string;
  servername?: string;
  ca?: string;
  submissionsPort?: string;
  user?: string;
  passwordStdin?: boolean;
  timeout: string;
}

export async function checkTarget(hostPort: string, o: CheckOptions): Promise<CheckTarget> {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s]+))(?::(\d{1,5}))?$/.exec(hostPort);
  if (!m) throw new Error(`expected HOST[:PORT], got ${JSON.stringify(hostPort)}`);
  const host = m[1] ?? m[2]!;
  const port = m[3] ? Number(m[3]) : 25;
  const mode = o.mode ?? (port === 465 ? "submissions" : port === 587 ? "submission" : "mta");
  if (!isListenerMode(mode)) throw new Error(`--mode: expected one of ${LISTENER_MODES.join(", ")}`);
  if (!/^[^@\s<>]+@[^@\s<>]+$/.test(o.relayTo)) throw new Error("--relay-to must be local@domain");
  let login: CheckTarget["login"];
  if (o.user) {
    const env = process.env.POSTERN_PASSWORD;
    const password = env ? env : await readPassword({ fromStdin: o.passwordStdin === true, prompt: `Password for ${o.user}: ` });
    // No terminal and empty stdin (cron, CI): never try a login with an empty password.
    if (password === "") throw new Error(`--user ${o.user}: no password; set $POSTERN_PASSWORD or pipe it with --password-stdin`);
    login = { username: o.user, password };
  }
  const submissionsPort = o.submissionsPort ? Number(o.submissionsPort) : mode !== "submissions" && (port === 25 || port === 587) ? 465 : undefined;
  return {
    host,
    port,
    mode,
    domain: o.domain,
    relayTo: o.relayTo,
    ehlo: o.ehlo,
    servername: o.servername ?? host,
    ca: o.ca ? readFileSync(o.ca) : undefined,
    submissionsPort,
    login,
    timeoutMs: Number(o.timeout) * 1000,
  };
}

export function formatItems(items: CheckItem[]): string {
  const lines = items.map((i) => `${i.verdict.padEnd(10)} ${i.id}: ${i.reason}${i.fix ? `\n           fix: ${i.fix}` : ""}`);
  const count = (v: string) => items.filter((i) => i.verdict === v).length;
  lines.push(`\n${count("PASS")} passed, ${count("WARN")} warnings, ${count("FAIL")} failed, ${count("NOT TESTED")} not tested`);
  return lines.join("\n") + "\n";
}

export async function checkCommand(hostPort: string, o: CheckOptions): Promise<void> {
  const target = await checkTarget(hostPort, o);
  const items = await runCheck(target);
  const failed = items.some((i) => i.verdict === "FAIL");
  if (o.json) {
    process.stdout.write(JSON.stringify({ target: `${target.host}:${target.port}`, mode: target.mode, ok: !failed, items }, null, 2) + "\n");
  } else process.stdout.write(formatItems(items));
  process.exitCode = failed ? 2 : 0;
}
