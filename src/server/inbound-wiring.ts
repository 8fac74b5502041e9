/**
 * Wiring of the inbound checks (src/inbound): one DNS cache for every connection, the SPF check
 * at MAIL when inbound.spfRejectFail is set, and the content step each message passes.
 */
import type { Config } from "../config/schema.js";
import type { RelayPolicy } from "../policy/relay.js";
import type { PolicySetup } from "../policy/session-ports.js";
import type { ContentStep } from "../smtp/content-steps.js";
import type { InfoWarnLog } from "../base/log.js";
import { InboundDns } from "../inbound/dns.js";
import { inboundCheckStep } from "../inbound/check-step.js";
import { spfMailFrom } from "../inbound/spf.js";

export interface InboundWiring {
  /** PolicySetup.spfAtMail; undefined unless inbound.spfRejectFail. */
  spfAtMail: PolicySetup["spfAtMail"];
  /** The content step for one connection's messages. */
  step(log: InfoWarnLog): ContentStep;
}

export function createInboundWiring(config: Config, relay: RelayPolicy): InboundWiring {
  const dns = new InboundDns({ servers: config.dns.servers, timeoutMs: config.dns.timeoutMs, cacheMaxSec: config.inbound.dnsCacheSec });
  const budget = { maxLookups: config.inbound.maxLookups, budgetMs: config.inbound.timeBudgetMs };
  return {
    spfAtMail: config.inbound.spfRejectFail
      ? (q) => spfMailFrom({ ...q, hostname: config.hostname, resolve: dns.forMessage(budget) }) ?? Promise.resolve(null)
      : undefined,
    step: (log) =>
      inboundCheckStep({
        hostname: config.hostname,
        settings: config.inbound,
        dns,
        trusted: (c) => relay.mayRelay({ ip: c.ip, mode: c.listener, authUser: c.authUser }).allowed,
        log,
      }),
  };
}
