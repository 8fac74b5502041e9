/**
 * The inbound content step on its own (src/inbound/check-step.ts), over the real DNS responder:
 * SPF pass/fail/softfail/permerror for MAIL FROM and HELO, a valid and a broken DKIM signature,
 * DMARC with its policy, the Authentication-Results text, and who is never checked.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startDnsServer, type DnsServer } from "../delivery/helpers/dns-server.js";
import { InboundDns } from "../../src/inbound/dns.js";
import { inboundCheckStep, type InboundSettings } from "../../src/inbound/check-step.js";
import { ContentPipeline, type ContentOutcome } from "../../src/smtp/content-steps.js";
import { NO_FIELDS } from "../../src/smtp/message-intake.js";
import type { HeaderInfo } from "../../src/smtp/headers.js";
import type { NewEnvelope } from "../../src/queue/types.js";
import { dkimEntry, rsaKey, signed } from "./helpers.js";

const key = rsaKey();
const ZONE = {
  "pass.example.org": { TXT: ["v=spf1 ip4:127.0.0.1 -all"] },
  "fail.example.org": { TXT: ["v=spf1 -all"] },
  "soft.example.org": { TXT: ["v=spf1 ~all"] },
  "broken.example.org": { TXT: ["v=spf1 ip4:127.0.0.1 foo:bar -all"] },
  "client.example.net": { TXT: ["v=spf1 ip4:127.0.0.1 -all"] },
  "s1._domainkey.example.org": dkimEntry(key),
  "_dmarc.example.org": { TXT: ["v=DMARC1; p=reject"] },
  "_dmarc.example.com": { TXT: ["v=DMARC1; p=quarantine"] },
};

const settings: InboundSettings = { dmarc: "enforce", spfRejectFail: false, maxLookups: 40, timeBudgetMs: 5000 };

function envelope(mailFrom: string, client: Partial<NewEnvelope["client"]> = {}): NewEnvelope {
  return {
    mailFrom,
    client: { ip: "127.0.0.1", helo: "client.example.net", listener: "mta", ...client },
    senderVouched: false,
    recipients: [{ address: "rcpt@example.org" }],
  } as NewEnvelope;
}

/** Runs the step over `message` as the intake would: header section, then the body in small chunks. */
async function check(
  dns: DnsServer,
  message: string,
  env: NewEnvelope,
  opts: { settings?: InboundSettings; headers?: HeaderInfo; trusted?: boolean } = {},
): Promise<{ outcome: ContentOutcome; logs: Record<string, unknown>[] }> {
  const logs: Record<string, unknown>[] = [];
  const log = { info: (f: Record<string, unknown>) => logs.push(f), warn: (f: Record<string, unknown>) => logs.push(f) };
  const step = inboundCheckStep({
    hostname: "mx.example.org",
    settings: opts.settings ?? settings,
    dns: new InboundDns({ servers: [dns.address], timeoutMs: 1000, cacheMaxSec: 60 }),
    trusted: () => opts.trusted ?? false,
    log,
  });
  const pipeline = new ContentPipeline([step], () => ({ envelope: env, headers: opts.headers ?? NO_FIELDS }), 64 * 1024);
  const bytes = Buffer.from(message);
  for (let i = 0; i < bytes.length; i += 7) pipeline.push(bytes.subarray(i, i + 7));
  return { outcome: await pipeline.finish(), logs };
}

function header(outcome: ContentOutcome): string {
  assert.ok(outcome.ok, `refused: ${JSON.stringify(outcome)}`);
  return outcome.headerPrefix ?? "";
}

const plain = (from: string) => `From: <${from}>\r\nTo: <rcpt@example.org>\r\nSubject: hi\r\n\r\nhello\r\n`;

test("SPF pass, fail, softfail and permerror for MAIL FROM; pass for HELO; the header's text", async () => {
  const dns = await startDnsServer(ZONE);
  try {
    const report = { ...settings, dmarc: "report" as const };
    const pass = header((await check(dns, plain("a@pass.example.org"), envelope("a@pass.example.org"), { settings: report })).outcome);
    assert.match(pass, /^Authentication-Results: mx\.example\.org;\r\n\t/);
    assert.match(
      pass,
      /\tspf=pass \(mx\.example\.org: domain of a@pass\.example\.org designates 127\.0\.0\.1 as permitted sender\) smtp\.mailfrom=a@pass\.example\.org;\r\n/,
    );
    assert.match(pass, /\tspf=pass \([^)]*\) smtp\.helo=client\.example\.net;\r\n/);
    assert.match(pass, /\tdkim=none \(message not signed\);\r\n/);
    // No record at pass.example.org: the organizational domain's (example.org, p=reject) applies.
    assert.match(pass, /\tdmarc=pass \(p=REJECT\) header\.from=pass\.example\.org\r\n$/);
    for (const [domain, result] of [
      ["fail.example.org", "fail"],
      ["soft.example.org", "softfail"],
      ["broken.example.org", "permerror"],
      ["none.example.org", "none"],
    ]) {
      const h = header((await check(dns, plain(`a@${domain}`), envelope(`a@${domain}`), { settings: report })).outcome);
      assert.match(h, new RegExp(`\\tspf=${result} \\([^)]*\\) smtp\\.mailfrom=a@${domain.replace(/\./g, "\\.")};`), `${domain}: ${h}`);
    }
  } finally {
    await dns.close();
  }
});

test("a valid DKIM signature passes and aligns; a body changed after signing does not", async () => {
  const dns = await startDnsServer(ZONE);
  try {
    const message = await signed(plain("ceo@example.org"), "example.org", "s1", key);
    // SPF fails (the sender domain says -all): only DKIM can align.
    const good = await check(dns, message, envelope("x@fail.example.org"));
    const h = header(good.outcome);
    assert.match(h, /\tdkim=pass header\.d=example\.org header\.s=s1 header\.a=rsa-sha256 header\.b=[A-Za-z0-9+/]{8};/);
    assert.match(h, /\tdmarc=pass \(p=REJECT\) header\.from=example\.org\r\n$/);
    assert.equal(good.logs.find((l) => l.event === "inbound-auth")?.dmarc, "pass");

    const broken = await check(dns, message.replace("hello", "hellO"), envelope("x@fail.example.org"), { settings: { ...settings, dmarc: "report" } });
    const b = header(broken.outcome);
    assert.match(b, /\tdkim=neutral \(body hash did not verify\) header\.d=example\.org/);
    assert.match(b, /\tdmarc=fail \(p=REJECT\) header\.from=example\.org/);
  } finally {
    await dns.close();
  }
});

test("enforce: DMARC fail with p=reject is refused 550 5.7.1; p=quarantine gets the quarantine field; report refuses nothing", async () => {
  const dns = await startDnsServer(ZONE);
  try {
    const rejected = (await check(dns, plain("ceo@example.org"), envelope("x@fail.example.org"))).outcome;
    assert.ok(!rejected.ok && "refusal" in rejected);
    assert.equal(rejected.refusal.reply.code, 550);
    assert.equal(rejected.refusal.reply.enhanced, "5.7.1");
    assert.match(rejected.refusal.reply.lines[0]!, /DMARC policy of example\.org/);

    const quarantined = header((await check(dns, plain("ceo@example.com"), envelope("x@fail.example.org"))).outcome);
    assert.match(quarantined, /\r\nX-Postern-Quarantine: dmarc \(header\.from=example\.com p=QUARANTINE\)\r\n$/);

    const reported = header(
      (await check(dns, plain("ceo@example.org"), envelope("x@fail.example.org"), { settings: { ...settings, dmarc: "report" } })).outcome,
    );
    assert.match(reported, /\tdmarc=fail \(p=REJECT\) header\.from=example\.org\r\n$/);
    assert.doesNotMatch(reported, /Quarantine/);
  } finally {
    await dns.close();
  }
});

test("authenticated and trusted (mynetworks) clients are never checked, never refused; off checks nothing", async () => {
  const dns = await startDnsServer(ZONE);
  try {
    const authed = await check(dns, plain("ceo@example.org"), envelope("x@fail.example.org", { authUser: "john@example.org" }));
    assert.ok(authed.outcome.ok && authed.outcome.headerPrefix === undefined);
    const trusted = await check(dns, plain("ceo@example.org"), envelope("x@fail.example.org"), { trusted: true });
    assert.ok(trusted.outcome.ok && trusted.outcome.headerPrefix === undefined);
    const off = await check(dns, plain("ceo@example.org"), envelope("x@fail.example.org"), { settings: { ...settings, dmarc: "off" } });
    assert.ok(off.outcome.ok && off.outcome.headerPrefix === undefined);
    assert.deepEqual(dns.queries, [], "no DNS asked for any of them");
  } finally {
    await dns.close();
  }
});

test("a header section over the limit is refused (it could hide a forged Authentication-Results:)", async () => {
  const dns = await startDnsServer(ZONE);
  try {
    const truncated = { ...NO_FIELDS, truncated: true };
    const r = (await check(dns, plain("a@pass.example.org"), envelope("a@pass.example.org"), { headers: truncated })).outcome;
    assert.ok(!r.ok && "refusal" in r);
    assert.equal(r.refusal.reply.code, 552);
  } finally {
    await dns.close();
  }
});

test("a DMARC fail that a DNS failure may have caused is temperror, never refused", async () => {
  // The key's name answers SERVFAIL: the signature cannot be checked.
  const dns = await startDnsServer({ ...ZONE, "s1._domainkey.example.org": { servfail: true } });
  try {
    const message = await signed(plain("ceo@example.org"), "example.org", "s1", key);
    const { outcome } = await check(dns, message, envelope("x@fail.example.org"));
    const h = header(outcome);
    assert.match(h, /\tdkim=temperror \(DNS failure: [^)]*\) header\.d=example\.org/);
    assert.match(h, /\tdmarc=temperror \(p=REJECT SPF or DKIM could not be checked\) header\.from=example\.org\r\n$/);
  } finally {
    await dns.close();
  }
});
