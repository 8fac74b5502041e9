/**
 * DKIM signing (RFC 6376; Ed25519 per RFC 8463) as a content step: the body hash is taken while
 * the message streams to the queue store, and the DKIM-Signature fields go on top through the
 * envelope's header prefix, so the stored bytes they cover are never rewritten or held.
 *
 * Which mail: from an authenticated client (any listener) or the local injector (its envelope
 * names a login either way), when the domain of the From: field has active keys. One From: field
 * with one domain only: anything else is not ours to vouch for (RFC 6376 §6.1.1 needs d= to match).
 * The checks that the login owns that From: ran before (message-intake.ts); steps run after them.
 *
 * Choices: c=relaxed/relaxed (survives the whitespace changes relays make), never l= (a signed
 * prefix lets anyone append content), t= but no x=, and the signed set of §5.4.1 with the fields
 * an attacker would add or replace over-signed (§8.15: listed once more than present, so another
 * instance added in transit breaks the signature).
 */
import { createHash, sign as cryptoSign, type KeyObject } from "node:crypto";
import { extractAddresses } from "../policy/sender.js";
import { domainOf } from "../base/domain.js";
import type { ContentContext, ContentStep, ContentStepResult, StepRun } from "../smtp/content-steps.js";
import { RelaxedBodyHash, relaxedHeader, splitHeaderSection, type RawField } from "./canonical.js";
import type { SigningKey } from "./keys.js";

/** Signed as many times as present, plus once (RFC 6376 §5.4.1, §8.15). */
export const OVERSIGNED = [
  "From",
  "Sender",
  "Reply-To",
  "Subject",
  "Date",
  "Message-ID",
  "To",
  "Cc",
  "MIME-Version",
  "Content-Type",
  "Content-Transfer-Encoding",
  "In-Reply-To",
  "References",
];

/** Signed as many times as present (lists and resenders add these legitimately). */
export const SIGNED_IF_PRESENT = [
  "Content-Disposition",
  "Content-ID",
  "Content-Description",
  "Resent-Date",
  "Resent-From",
  "Resent-Sender",
  "Resent-To",
  "Resent-Cc",
  "Resent-Message-ID",
  "List-Id",
  "List-Help",
  "List-Unsubscribe",
  "List-Unsubscribe-Post",
  "List-Subscribe",
  "List-Post",
  "List-Owner",
  "List-Archive",
  // RFC 8460 §5.3: a mailed TLS-RPT report's signature covers these.
  "TLS-Report-Domain",
  "TLS-Report-Submitter",
];

export interface DkimSignerOptions {
  /** Active keys of a (lower-cased) domain; empty: its mail is not signed. */
  keys(domain: string): readonly SigningKey[];
  now?: () => Date;
}

/** The From: domain a message would be signed for, or null (none, several fields, several domains). */
export function fromDomain(fields: RawField[]): string | null {
  const from = fields.filter((f) => f.name.toLowerCase() === "from");
  if (from.length !== 1) return null;
  const raw = from[0]!.raw;
  const value = Buffer.from(raw.slice(raw.indexOf(":") + 1), "latin1").toString("utf8");
  const domains = new Set(extractAddresses(value.replace(/\r\n/g, "")).map(domainOf));
  if (domains.size !== 1) return null;
  const [domain] = domains;
  return domain ? domain : null;
}

/** h= and the canonical fields it covers, bottom-up per name (§5.4.2). */
export function signedFields(fields: RawField[]): { names: string[]; canonical: string } {
  const byName = new Map<string, RawField[]>();
  for (const f of fields) {
    const key = f.name.toLowerCase();
    byName.set(key, [...(byName.get(key) ?? []), f]);
  }
  const names: string[] = [];
  let canonical = "";
  const add = (name: string, extra: number) => {
    const present = byName.get(name.toLowerCase()) ?? [];
    for (let i = present.length - 1; i >= 0; i--) {
      names.push(name);
      canonical += `${relaxedHeader(present[i]!.raw)}\r\n`;
    }
    // A name listed with no instance left to take contributes nothing (§5.4.2): the over-signing.
    for (let i = 0; i < extra; i++) names.push(name);
  };
  for (const name of OVERSIGNED) add(name, 1);
  for (const name of SIGNED_IF_PRESENT) add(name, 0);
  return { names, canonical };
}

/** Tags joined with "; ", folded at tag (and h= name) boundaries to keep lines near 78 octets. */
function foldTags(tags: string[]): string {
  let out = "DKIM-Signature:";
  let line = out.length;
  const append = (piece: string, sep: string) => {
    if (line + sep.length + piece.length > 76 && line > 1) {
      out += `\r\n\t${piece}`;
      line = 1 + piece.length;
    } else {
      out += sep + piece;
      line += sep.length + piece.length;
    }
  };
  for (const [i, tag] of tags.entries()) {
    const last = i === tags.length - 1;
    if (tag.startsWith("h=")) {
      const names = tag.slice(2).split(":");
      for (const [j, n] of names.entries()) append(`${j === 0 ? "h=" : ""}${n}${j < names.length - 1 ? ":" : last ? "" : ";"}`, j === 0 ? " " : "");
    } else append(`${tag}${last ? "" : ";"}`, " ");
  }
  return out;
}

function signAsync(algorithm: string | null, data: Buffer, key: KeyObject): Promise<Buffer> {
  // The callback form runs on libuv's thread pool: an RSA signature does not stall other sessions.
  return new Promise((resolve, reject) => cryptoSign(algorithm, data, key, (err, sig) => (err ? reject(err) : resolve(sig))));
}

/** One DKIM-Signature field (without its final CRLF) for the canonical signed fields and body hash. */
export async function signatureField(key: SigningKey, names: string[], canonical: string, bodyHash: Buffer, now: Date): Promise<string> {
  const tags = [
    "v=1",
    `a=${key.algorithm === "ed25519" ? "ed25519-sha256" : "rsa-sha256"}`,
    "c=relaxed/relaxed",
    `d=${key.domain}`,
    `s=${key.selector}`,
    `t=${Math.floor(now.getTime() / 1000)}`,
    `h=${names.join(":")}`,
    `bh=${bodyHash.toString("base64")}`,
    "b=",
  ];
  const unsigned = foldTags(tags);
  // §3.7: the signed fields, then this one with an empty b= and no final CRLF.
  const data = Buffer.from(canonical + relaxedHeader(unsigned), "latin1");
  const signature =
    key.algorithm === "ed25519"
      ? // RFC 8463 §3: Ed25519 (pure) over the SHA-256 of the data.
        await signAsync(null, createHash("sha256").update(data).digest(), key.privateKey)
      : await signAsync("sha256", data, key.privateKey);
  const b64 = signature.toString("base64");
  const lastLine = unsigned.length - unsigned.lastIndexOf("\n") - 1;
  let out = unsigned;
  let room = Math.max(76 - lastLine, 8);
  for (let i = 0; i < b64.length; ) {
    out += b64.slice(i, i + room);
    i += room;
    if (i < b64.length) out += "\r\n\t";
    room = 75;
  }
  return out;
}

class SignRun implements StepRun {
  private readonly bodyHash = new RelaxedBodyHash();

  constructor(
    private readonly keys: readonly SigningKey[],
    private readonly fields: RawField[],
    private readonly now: () => Date,
  ) {}

  body(chunk: Buffer): void {
    this.bodyHash.update(chunk);
  }

  async finish(): Promise<ContentStepResult> {
    const bodyHash = this.bodyHash.digest();
    const { names, canonical } = signedFields(this.fields);
    const now = this.now();
    const prependHeaders = await Promise.all(this.keys.map((k) => signatureField(k, names, canonical, bodyHash, now)));
    return { prependHeaders, logFields: { dkim: this.keys.map((k) => k.selector) } };
  }
}

export class DkimSigner implements ContentStep {
  readonly name = "dkim-sign";
  private readonly now: () => Date;

  constructor(private readonly o: DkimSignerOptions) {
    this.now = o.now ?? (() => new Date());
  }

  begin(ctx: ContentContext): StepRun | null {
    // Ours to sign: a login (SMTP AUTH, or "local:<user>" from the local injector) sent it.
    if (ctx.envelope.client.authUser === undefined) return null;
    const fields = splitHeaderSection(ctx.headerSection.toString("latin1"));
    if (fields === null) return null;
    const domain = fromDomain(fields);
    if (domain === null) return null;
    const keys = this.o.keys(domain);
    if (keys.length === 0) return null;
    return new SignRun(keys, fields, this.now);
  }
}
