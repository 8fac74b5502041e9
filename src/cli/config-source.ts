/**
 * Where a command's configuration comes from. One rule for every command:
 *   --config FILE, else $POSTERN_CONFIG, else /etc/postern/postern.yaml.
 * Only `postern serve` with no configuration at all (none given and no default file) runs the
 * embedded demo; every other command refuses, so a user is never "added" to a store the server
 * does not read, and `queue list` never reports the demo's empty queue for the real one.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { ConfigError, loadConfigFile, parseConfigObject } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { demoConfig } from "./demo.js";

export const DEFAULT_CONFIG_PATH = "/etc/postern/postern.yaml";
export const CONFIG_ENV = "POSTERN_CONFIG";

export type ConfigOrigin = "--config" | "$POSTERN_CONFIG" | "default";

/** The configuration file a command uses, and why that one. */
export function configPathOf(option: string | undefined, env: NodeJS.ProcessEnv = process.env): { path: string; origin: ConfigOrigin } {
  if (option) return { path: resolve(option), origin: "--config" };
  const fromEnv = env[CONFIG_ENV];
  if (fromEnv) return { path: resolve(fromEnv), origin: "$POSTERN_CONFIG" };
  return { path: DEFAULT_CONFIG_PATH, origin: "default" };
}

export interface ResolvedConfig {
  config: Config;
  /** The embedded demo configuration (serve only). */
  demo: boolean;
  /** The file read; undefined for the demo. */
  path?: string;
  origin?: ConfigOrigin;
}

/**
 * For commands that work on the real server's data (user, queue, config check): the rule above,
 * never the demo. A missing file is a configuration error naming the three ways to give one.
 */
export function commandConfig(option: string | undefined): ResolvedConfig {
  const { path, origin } = configPathOf(option);
  if (!existsSync(path)) {
    throw new ConfigError(`no configuration file: ${path} (${origin === "default" ? "the default" : `from ${origin}`}) does not exist`, [
      `give one with --config FILE or $${CONFIG_ENV}, or install it as ${DEFAULT_CONFIG_PATH}`,
      "(only `postern serve` falls back to the embedded demo, whose data is in ./data)",
    ]);
  }
  return { config: loadConfigFile(path), demo: false, path, origin };
}

/**
 * `postern serve` (and its SIGHUP reload): the same rule, but with nothing given and no default
 * file, the embedded demo (loopback ports, ./data).
 */
export function resolveConfig(option: string | undefined): ResolvedConfig {
  const { path, origin } = configPathOf(option);
  if (origin === "default" && !existsSync(path)) return { config: parseConfigObject(demoConfig(), process.cwd()), demo: true };
  return { config: loadConfigFile(path), demo: false, path, origin };
}

/** The line a command that changes state prints (on stderr: stdout stays for --json and scripts). */
export function announce(resolved: ResolvedConfig, out: (line: string) => void = (l) => process.stderr.write(l + "\n")): void {
  if (resolved.demo) out(`postern: using the embedded demo configuration, data directory ${resolved.config.dataDir}`);
  else out(`postern: using config ${resolved.path} (${resolved.origin}), data directory ${resolved.config.dataDir}`);
}
