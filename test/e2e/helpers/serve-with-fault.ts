/**
 * `postern serve --config PATH` with a disk fault injected into the spool writer, for the rule 16
 * failure tests (test/e2e/storage-errors.test.ts): `node serve-with-fault.js ENOSPC@4096 --config
 * PATH` fails a write past 4096 octets with ENOSPC, `EIO@commit` fails the data fsync. The fault
 * reaches the server as a start option (StartOptions.spoolFault), so production code reads no
 * switch of its own; everything else is what `postern serve` does (src/cli/serve.ts).
 */
import { createLogger } from "../../../src/server/log.js";
import { Metrics } from "../../../src/server/metrics.js";
import { operate } from "../../../src/cli/serve-operate.js";
import { startServer } from "../../../src/server/server.js";
import { resolveConfig } from "../../../src/cli/config-source.js";
import type { SpoolFault } from "../../../src/queue/spool-writer.js";

/** "ENOSPC@4096" or "EIO@commit". */
export function parseSpoolFault(spec: string): SpoolFault {
  const m = /^([A-Z]+)@(\d+|commit)$/.exec(spec);
  if (!m) throw new Error(`a spool fault looks like ENOSPC@4096 or EIO@commit, not ${JSON.stringify(spec)}`);
  return { code: m[1]!, at: m[2] === "commit" ? "commit" : Number(m[2]) };
}

const [spec, flag, configPath] = process.argv.slice(2);
if (spec !== undefined && flag === "--config" && configPath !== undefined) {
  const { config } = resolveConfig(configPath);
  const source = { file: configPath };
  const metrics = new Metrics();
  const log = createLogger(config.log, process.stdout, metrics.observe);
  const server = await startServer(config, log, { source, spoolFault: parseSpoolFault(spec), hourly: metrics.hourly });
  await operate({ config, server, metrics, log, source, reloadConfig: () => resolveConfig(configPath).config });
}
