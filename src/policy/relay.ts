/**
 * The one place that decides relaying (DESIGN principle 2): may this client, in this session,
 * send to this recipient? Every denial carries its reason for the log.
 */
import type { ListenerMode } from "../base/listener-mode.js";
import { normaliseDomain } from "../base/domain.js";
import { C550MailboxUnavail, localError, policyRefusal, Se511BadDestMailbox } from "../base/reply-codes.js";
import { reply } from "../base/reply.js";
import { deny, type Decision } from "../base/decision.js";
import type { NetworkList } from "./networks.js";

/** The parts of a parsed path the policy needs (see smtp/address.ts). */
export interface PathParts {
  address: string;
  localPart: string;
  domain: string;
  domainIsLiteral: boolean;
  /** ASCII (A-label) form of the domain, compared with the configured domains. */
  domainAscii?: string;
  /** "RCPT TO:<Postmaster>" without a domain (RFC 5321 §4.1.1.3). */
  barePostmaster?: boolean;
}

export interface ClientContext {
  ip: string;
  mode: ListenerMode;
  /** Authenticated login, if any. */
  authUser?: string;
}

export interface RelayPolicyOptions {
  localDomains: readonly string[];
  /** Address literals ("[192.0.2.1]") that count as local; none by default (SECURITY.md rule 7). */
  localAddressLiterals: readonly string[];
  mynetworks: NetworkList;
  /** The mailbox's own spelling of this local address (from the user record), or null if none. */
  localMailbox(address: string): Promise<string | null>;
  /** The transport table sends this domain to `reject`: refuse at RCPT rather than bounce later. */
  refusedDomain?(domain: string): boolean;
}

/** An allowed recipient may be rewritten to the user record's spelling (SECURITY.md rule 6). */
export type RecipientDecision = Decision & { local?: boolean; address?: string };

export class RelayPolicy {
  private readonly domains: Set<string>;
  private readonly literals: Set<string>;

  constructor(private readonly opts: RelayPolicyOptions) {
    this.domains = new Set(opts.localDomains.map(normaliseDomain));
    this.literals = new Set(opts.localAddressLiterals.map((l) => l.toLowerCase()));
  }

  isLocalDomain(domain: string, isLiteral = false): boolean {
    const d = normaliseDomain(domain);
    return isLiteral ? this.literals.has(d) : this.domains.has(d);
  }

  /** May the client relay (send to non-local domains)? */
  mayRelay(ctx: ClientContext): { allowed: boolean; why: string } {
    if (ctx.authUser !== undefined) return { allowed: true, why: `authenticated as ${ctx.authUser}` };
    // Submission ports never relay without AUTH, whatever mynetworks says (RFC 6409 §4.3).
    if (ctx.mode === "mta" && this.opts.mynetworks.contains(ctx.ip)) return { allowed: true, why: "client in mynetworks" };
    return { allowed: false, why: "not authenticated and not in mynetworks" };
  }

  private refused(rcpt: PathParts): boolean {
    return !rcpt.domainIsLiteral && this.opts.refusedDomain?.(normaliseDomain(rcpt.domainAscii || rcpt.domain)) === true;
  }

  private refusedByTransport(rcpt: PathParts): RecipientDecision {
    return deny(policyRefusal(550, `<${rcpt.address}>: Recipient address rejected: mail for this domain is refused`), "transport table: reject");
  }

  async checkRecipient(ctx: ClientContext, rcpt: PathParts): Promise<RecipientDecision> {
    if (rcpt.barePostmaster) return { allow: true, note: "postmaster (RFC 5321 §4.1.1.3)", local: true };
    const local = this.isLocalDomain(rcpt.domainAscii || rcpt.domain, rcpt.domainIsLiteral);
    if (!local) {
      const relay = this.mayRelay(ctx);
      if (!relay.allowed) return deny(policyRefusal(554, `<${rcpt.address}>: Relay access denied`), `relay denied: ${relay.why}`);
      if (this.refused(rcpt)) return this.refusedByTransport(rcpt);
      return { allow: true, note: relay.why, local: false };
    }
    // Accepted now, failed at delivery, it would be a bounce to a sender who may be forged (backscatter).
    if (this.refused(rcpt)) return this.refusedByTransport(rcpt);
    // Local domain. The %-hack and bang paths are never routing: the local part is just data,
    // so "user%elsewhere@our.domain" is looked up as a mailbox of ours and does not exist.
    if (isPostmaster(rcpt.localPart)) return { allow: true, note: "postmaster (RFC 5321 §4.5.1)", local: true };
    let mailbox: string | null;
    try {
      mailbox = await this.opts.localMailbox(rcpt.address);
    } catch (err) {
      return deny(localError(`<${rcpt.address}>: Temporary lookup failure`), `user lookup failed: ${String(err)}`);
    }
    if (mailbox === null) {
      // Refused now, at RCPT time: a bounce later would be backscatter.
      return deny(
        reply(C550MailboxUnavail, Se511BadDestMailbox, `<${rcpt.address}>: Recipient address rejected: User unknown in local recipient table`),
        "unknown local user",
      );
    }
    return { allow: true, local: true, address: mailbox };
  }
}

export function isPostmaster(localPart: string): boolean {
  return localPart.toLowerCase() === "postmaster";
}
