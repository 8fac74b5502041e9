/**
 * `postern config check`: validate a config, check it against this machine (src/cli/config-audit.ts)
 * and for dangerous settings (src/config/risks.ts), and print the effective configuration with
 * defaults filled in — secrets redacted. Exit 78 (EX_CONFIG) on any error; warnings alone exit 0.
 */
import { stringify } from "yaml";
import { configWarnings, type ConfigFinding } from "../config/risks.js";
import { auditConfig } from "./config-audit.js";
import { commandConfig } from "./config-source.js";

/** Keys whose values are secrets: never printed, whatever section they are in. */
const SECRET_KEY = /^(password|passwd|pass|secret|passphrase|token|apikey)$|(password|secret|token)$/i;

export function redactSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactSecrets);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, SECRET_KEY.test(k) && v !== undefined ? "<redacted>" : redactSecrets(v)]));
}

export function formatFindings(findings: ConfigFinding[], file: string): string {
  return findings.map((f) => `${file}: ${f.level}: ${f.key ? `${f.key}: ` : ""}${f.message}\n`).join("");
}

export function configCheck(opts: { config?: string }): void {
  const { config, path, origin } = commandConfig(opts.config);
  process.stderr.write(`postern: checking ${path} (${origin})\n`);
  const findings = [...auditConfig(config, path), ...configWarnings(config)];
  process.stdout.write(stringify(redactSecrets(config)));
  process.stderr.write(formatFindings(findings, path!));
  const errors = findings.filter((f) => f.level === "error").length;
  const warnings = findings.length - errors;
  process.stderr.write(`postern: config check: ${errors} error${errors === 1 ? "" : "s"}, ${warnings} warning${warnings === 1 ? "" : "s"}\n`);
  process.exitCode = errors > 0 ? 78 : 0;
}
