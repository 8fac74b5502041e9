/** `postern config check`: validate a config and print the effective one, defaults filled in. */
import { stringify } from "yaml";
import { resolveConfig } from "./config-source.js";

export function configCheck(opts: { config?: string }): void {
  const { config, demo } = resolveConfig(opts.config);
  if (demo) process.stdout.write("# no --config given: the embedded demo configuration\n");
  process.stdout.write(stringify(config));
}
