/**
 * Wiring for routing: config → transport table, MX resolver, outbound session pool, aliases.
 * server.ts spreads `delivererOptions` into createDeliverer and asks `aliases` at RCPT time.
 */
import { readFileSync } from "node:fs";
import type { Config } from "../config/schema.js";
import { AliasResolver } from "../delivery/aliases.js";
import { MxResolver } from "../delivery/mx.js";
import type { DelivererOptions } from "../delivery/router.js";
import { SmtpPool } from "../delivery/smtp-pool.js";
import { TransportTable } from "../delivery/transport.js";
import type { Logger } from "./log.js";

export interface Routing {
  aliases: AliasResolver;
  delivererOptions: Pick<DelivererOptions, "transport" | "mx" | "mxPort" | "ca" | "aliases" | "pool">;
  close(): Promise<void>;
}

export function createRouting(
  config: Config,
  isLocalDomain: (domain: string) => boolean,
  lookupUser: (address: string) => Promise<{ address: string } | null>,
  log: Logger,
): Routing {
  const aliases = new AliasResolver({
    file: config.aliases.file,
    delimiter: config.aliases.recipientDelimiter,
    isLocalDomain,
    mailbox: async (address) => (await lookupUser(address))?.address ?? null,
  });
  const transport = new TransportTable({
    entries: TransportTable.parseEntries(config.transport),
    isLocalDomain,
    hasSmarthost: config.relay.smarthost !== undefined,
  });
  const mx = new MxResolver({
    servers: config.dns.servers,
    timeoutMs: config.dns.timeoutMs,
    ownNames: [config.hostname],
    ownAddresses: config.dns.ownAddresses,
  });
  const o = config.outbound;
  const pool = new SmtpPool({
    maxTotal: o.maxConnections,
    maxPerDestination: o.maxPerDestination,
    idleTimeoutMs: o.idleTimeoutMs,
    maxMessagesPerSession: o.maxMessagesPerSession,
  });
  if (config.aliases.file) log.info({ event: "aliases-loaded", file: config.aliases.file }, "alias file loaded");
  return {
    aliases,
    delivererOptions: {
      transport,
      mx,
      mxPort: o.mxPort,
      ca: o.caFile ? readFileSync(o.caFile) : undefined,
      aliases,
      pool,
    },
    close: () => pool.close(),
  };
}
