/**
 * Wiring for routing: config → transport table, MX resolver, outbound session pool, aliases.
 * server.ts spreads `delivererOptions` into createDeliverer and asks `aliases` at RCPT time.
 */
import { readFileSync } from "node:fs";
import type { Config } from "../config/schema.js";
import { AliasResolver } from "../delivery/aliases.js";
import type { PgAliases } from "../store/pg/aliases.js";
import { MxResolver } from "../delivery/mx.js";
import type { DelivererOptions } from "../delivery/router.js";
import { SmtpPool } from "../delivery/smtp-pool.js";
import { TransportTable } from "../delivery/transport.js";
import { matchDane } from "../delivery/tls-policy/dane.js";
import { createMtaStsResolver, mxMatches } from "../delivery/tls-policy/mta-sts.js";
import { OutboundTlsPolicy } from "../delivery/tls-policy/policy.js";
import { TlsaResolver } from "../delivery/tls-policy/tlsa.js";
import type { TlsReportRecorder } from "../delivery/tls-policy/types.js";
import type { Logger } from "./log.js";

export interface Routing {
  aliases: AliasResolver;
  delivererOptions: Pick<DelivererOptions, "transport" | "mx" | "mxPort" | "ca" | "aliases" | "pool" | "tlsPolicy">;
  /** TLS-RPT: where delivery counts its TLS sessions (set once the report store is open). */
  useTlsRecorder(recorder: TlsReportRecorder): void;
  close(): Promise<void>;
}

export function createRouting(
  config: Config,
  isLocalDomain: (domain: string) => boolean,
  lookupUser: (address: string) => Promise<{ address: string } | null>,
  log: Logger,
  sharedAliases?: PgAliases,
): Routing {
  const aliases = new AliasResolver({
    file: config.aliases.file,
    delimiter: config.aliases.recipientDelimiter,
    isLocalDomain,
    mailbox: async (address) => (await lookupUser(address))?.address ?? null,
    shared: sharedAliases && ((keys) => sharedAliases.lookup(keys)),
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
  const ca = o.caFile ? readFileSync(o.caFile) : undefined;
  // Issue 15: DANE (only with dns.dnssec trust-ad, RFC 7672 §2.1), MTA-STS (RFC 8461), TLS-RPT.
  const mtaSts = createMtaStsResolver(config);
  const tlsPolicy = new OutboundTlsPolicy({
    mtaSts,
    tlsa: config.dns.dnssec === "trust-ad" ? new TlsaResolver({ mode: "trust-ad", servers: config.dns.servers, timeoutMs: config.dns.timeoutMs }) : undefined,
    matchDane: (usable, chain, mxHost, port) => matchDane(usable, chain, mxHost, new Date(), port),
    mxMatches,
  });
  if (config.aliases.file) log.info({ event: "aliases-loaded", file: config.aliases.file }, "alias file loaded");
  return {
    aliases,
    delivererOptions: {
      transport,
      mx,
      mxPort: o.mxPort,
      ca,
      aliases,
      pool,
      tlsPolicy,
    },
    useTlsRecorder: (recorder) => tlsPolicy.setRecorder(recorder),
    close: async () => {
      await pool.close();
      await mtaSts?.idle();
    },
  };
}
