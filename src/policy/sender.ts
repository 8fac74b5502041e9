/**
 * Sender ownership for authenticated users (Postfix reject_sender_login_mismatch): a user may send
 * as its own address, its "+detail" forms, and the extra addresses or "@domain"s listed for it.
 * The detail separator is the config's aliases.recipientDelimiter, the one the aliases honour, so
 * an address that reaches john also counts as john's when he sends from it.
 *
 * A relay client (`postern user add … --relay-client`: an organisation's own Postfix, a printer,
 * an application server) is a mail system sending for its domains: its "@domain" entries cover
 * the hosts under them too ("@example.org" owns root@host.example.org — Postfix's myorigin is its
 * host name by default — and MAILER-DAEMON@host.example.org, the From: of the reports it writes).
 *
 * The null sender (`MAIL FROM:<>`, RFC 5321 §4.5.5: delivery reports, RFC 8098 §2.1 read
 * receipts, RFC 5230 §5.4 vacation replies) names nobody, so for it the From: header is the
 * only address that says who sent the message: it must be present and owned, by any account.
 */
import { normaliseDomain } from "../base/domain.js";
import { DEFAULT_RECIPIENT_DELIMITER, isSubaddressOf } from "../base/mailbox.js";
import { contentRefusal, policyRefusal } from "../base/reply-codes.js";
import { ALLOW, deny, type Decision } from "../base/decision.js";

export interface SenderOwner {
  address: string;
  senders: readonly string[];
  /** Its "@domain" entries include their subdomains (see above). */
  relayClient?: boolean;
}

/** `delimiter`: the sub-address separator (aliases.recipientDelimiter); "" turns sub-addressing off. */
export function ownsAddress(user: SenderOwner, address: string, delimiter = DEFAULT_RECIPIENT_DELIMITER): boolean {
  const candidate = canonical(address);
  if (candidate === null) return false;
  const own = canonical(user.address);
  if (own !== null && sameMailbox(own, candidate, delimiter)) return true;
  for (const entry of user.senders) {
    if (entry.startsWith("@")) {
      const domain = normaliseDomain(entry.slice(1));
      if (candidate.domain === domain) return true;
      // A label boundary: "@example.org" never covers "evilexample.org".
      if (user.relayClient === true && candidate.domain.endsWith("." + domain)) return true;
      continue;
    }
    const allowed = canonical(entry);
    if (allowed !== null && sameMailbox(allowed, candidate, delimiter)) return true;
  }
  return false;
}

/** MAIL FROM check for an authenticated session. The null sender passes here; its From: is checked at the end of DATA. */
export function checkEnvelopeSender(user: SenderOwner, sender: string, delimiter = DEFAULT_RECIPIENT_DELIMITER): Decision {
  if (sender === "" || ownsAddress(user, sender, delimiter)) return ALLOW;
  return deny(policyRefusal(553, `<${sender}>: Sender address rejected: not owned by user ${user.address}`), `sender ${sender} not owned by ${user.address}`);
}

/**
 * From: header check for submitted mail (every address in it must be the user's). `sender` is the
 * transaction's MAIL FROM: a null-sender message must carry a From: (see above).
 */
export function checkFromHeader(user: SenderOwner, fromHeader: string | undefined, sender: string, delimiter = DEFAULT_RECIPIENT_DELIMITER): Decision {
  if (fromHeader === undefined) {
    if (sender === "") {
      return deny(
        policyRefusal(553, "From: header required: a message from the null sender must say who sent it"),
        `null-sender message without a From: header from ${user.address}`,
      );
    }
    return ALLOW; // RFC 6409 §8.1 lets the MSA add it; we do not guess
  }
  const addresses = extractAddresses(fromHeader);
  if (addresses.length === 0) {
    return deny(contentRefusal("Malformed From: header"), "From: header without an address");
  }
  const foreign = addresses.find((a) => !ownsAddress(user, a, delimiter));
  if (foreign === undefined) return ALLOW;
  // A mail server's own reports (From: MAILER-DAEMON@its-host) need a relay-client account: say so.
  const hint = sender === "" && !user.relayClient ? " (reports from a mail server need a relay-client account)" : "";
  return deny(
    policyRefusal(553, `<${foreign}>: From: header address rejected: not owned by user ${user.address}${hint}`),
    `From: header ${foreign} not owned by ${user.address}${sender === "" ? " (null sender)" : ""}`,
  );
}

/**
 * Pulls addr-specs out of an RFC 5322 address list: "Name <a@b>, c@d (comment)".
 * Comments and quoted display names are dropped first so a quoted "<x@y>" cannot hide the real one.
 */
export function extractAddresses(header: string): string[] {
  let text = "";
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < header.length; i++) {
    const c = header[i]!;
    if (c === "\\" && (quoted || depth > 0)) {
      i++;
      continue;
    }
    if (depth > 0) {
      if (c === "(") depth++;
      else if (c === ")") depth--;
      continue;
    }
    if (quoted) {
      if (c === '"') quoted = false;
      continue;
    }
    if (c === '"') quoted = true;
    else if (c === "(") depth = 1;
    else text += c;
  }
  const out: string[] = [];
  for (const part of text.split(",")) {
    const angle = /<([^<>]*)>/.exec(part);
    // Group syntax (RFC 5322 §3.4): "Team: a@x, b@y;" — drop the group name and the closing ";".
    const bare = part.replace(/^[^:<@]*:/, "").replace(/;\s*$/, "");
    const addr = (angle ? angle[1]! : bare).trim();
    if (addr.includes("@")) out.push(addr);
  }
  return out;
}

interface Mailbox {
  local: string;
  domain: string;
}

function canonical(address: string): Mailbox | null {
  const at = address.lastIndexOf("@");
  if (at <= 0 || at === address.length - 1) return null;
  return { local: address.slice(0, at).toLowerCase(), domain: normaliseDomain(address.slice(at + 1)) };
}

/** "john+lists@x" is john's, with "+" the configured separator (Postfix's recipient_delimiter). */
function sameMailbox(owner: Mailbox, candidate: Mailbox, delimiter: string): boolean {
  // Local parts were lower-cased (canonical): the separator is compared the same way.
  return owner.domain === candidate.domain && isSubaddressOf(candidate.local, owner.local, delimiter.toLowerCase());
}
