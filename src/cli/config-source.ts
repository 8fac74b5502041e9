/** Where a command's configuration comes from: --config FILE, or the embedded demo default. */
import { loadConfigFile, parseConfigObject } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { demoConfig } from "./demo.js";

export function resolveConfig(path: string | undefined): { config: Config; demo: boolean } {
  if (path) return { config: loadConfigFile(path), demo: false };
  return { config: parseConfigObject(demoConfig(), process.cwd()), demo: true };
}
