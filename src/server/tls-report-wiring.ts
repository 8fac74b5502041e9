/**
 * TLS-RPT wiring (RFC 8460, src/delivery/tls-policy/tls-report*.ts): config → the recorder the
 * delivery path counts sessions into, and the daily sender. Off (a no-op recorder) unless
 * outbound.tlsRpt.enabled.
 */
import { promises as dns } from "node:dns";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "../config/schema.js";
import { dkimKeysDir, KeyStore } from "../dkim/keys.js";
import { DkimSigner } from "../dkim/signer.js";
import type { TlsReportRecorder } from "../delivery/tls-policy/types.js";
import { TlsReportStore } from "../delivery/tls-policy/tls-report.js";
import { TlsReportSender } from "../delivery/tls-policy/tls-report-send.js";
import type { NewEnvelope, SpoolWriter } from "../queue/types.js";
import type { ContentContext } from "../smtp/content-steps.js";
import type { Logger } from "./log.js";

export interface TlsReportWiring {
  /** Hand this to the delivery path; a no-op when reporting is off. */
  recorder: TlsReportRecorder;
  /** Starts the daily sender once the queue runs. */
  start(queue: { openWriter(): Promise<SpoolWriter>; enqueue(id: string): void }): void;
  close(): Promise<void>;
}

/** outbound.tlsRpt.stateDir, relative paths inside dataDir; default <dataDir>/tls-rpt. */
export function tlsRptStateDir(config: Config): string {
  const dir = config.outbound.tlsRpt.stateDir;
  if (dir === undefined) return join(config.dataDir, "tls-rpt");
  return dir.startsWith("/") ? dir : join(config.dataDir, dir);
}

export async function createTlsReportWiring(config: Config, log: Logger): Promise<TlsReportWiring> {
  const c = config.outbound.tlsRpt;
  if (!c.enabled) return { recorder: { record: () => undefined }, start: () => undefined, close: async () => undefined };
  const store = new TlsReportStore({ dir: tlsRptStateDir(config), log });
  await store.open();
  let sender: TlsReportSender | undefined;
  return {
    recorder: store,
    start(queue) {
      const resolver = new dns.Resolver({ timeout: config.dns.timeoutMs, tries: 2 });
      if (config.dns.servers.length > 0) resolver.setServers(config.dns.servers);
      sender = new TlsReportSender({
        store,
        resolver,
        openWriter: queue.openWriter,
        enqueue: queue.enqueue,
        organization: c.organization ?? config.hostname,
        contact: c.contact ?? `postmaster@${config.hostname}`,
        hostname: config.hostname,
        ca: config.outbound.caFile ? readFileSync(config.outbound.caFile) : undefined,
        sendAfterMs: c.sendAfterMinutes * 60_000,
        log,
        sign: config.dkim.sign ? dkimSign(config) : undefined,
      });
      sender.start();
    },
    async close() {
      await sender?.stop();
      await store.close();
    },
  };
}

/** DKIM-signs a mailed report with the From: domain's active key, as mail from `postern sendmail` is. */
function dkimSign(config: Config): (message: Buffer) => Promise<string[]> {
  const keys = new KeyStore(dkimKeysDir(config));
  const signer = new DkimSigner({ keys: (domain) => keys.signingKeys(domain) });
  return async (message) => {
    const end = message.indexOf("\r\n\r\n");
    if (end < 0) return [];
    const envelope = { mailFrom: "", client: { ip: "127.0.0.1", helo: config.hostname, listener: "mta", authUser: "local:tls-rpt" }, recipients: [] };
    // The signer reads the header section and the envelope's login only.
    const ctx = { envelope: envelope as NewEnvelope, headers: {}, headerSection: message.subarray(0, end + 4) } as ContentContext;
    const run = signer.begin(ctx);
    if (!run) return [];
    run.body(message.subarray(end + 4));
    return (await run.finish()).prependHeaders ?? [];
  };
}
