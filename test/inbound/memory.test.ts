/**
 * mailauth reads the message as it streams, never whole: a 25 MB signed message through the
 * inbound step (chunks of 64 KB, the event loop turning between them as it does between socket
 * reads) grows RSS by far less than the message. The figure is printed for the README.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startDnsServer } from "../delivery/helpers/dns-server.js";
import { InboundDns } from "../../src/inbound/dns.js";
import { inboundCheckStep } from "../../src/inbound/check-step.js";
import { ContentPipeline } from "../../src/smtp/content-steps.js";
import { NO_FIELDS } from "../../src/smtp/message-intake.js";
import type { NewEnvelope } from "../../src/queue/types.js";
import { dkimEntry, rsaKey } from "./helpers.js";
import { dkimSign } from "mailauth";
import { Readable } from "node:stream";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

// Garbage (each chunk is a fresh buffer) would blur RSS: collect it before each reading, so what
// is counted is what the step keeps.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const held = () => {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

const SIZE = 25 * 1024 * 1024;
const CHUNK = 64 * 1024;

/** The body: 25 MB of 76-character base64-like lines, made chunk by chunk (never held whole). */
function* bodyChunks(): Generator<Buffer> {
  const line = Buffer.from(`${"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0"}\r\n`);
  const chunk = Buffer.concat(Array(Math.floor(CHUNK / line.length)).fill(line));
  // A fresh buffer each time, as from a socket: a reader that kept them would show in RSS.
  for (let sent = 0; sent < SIZE; sent += chunk.length) yield Buffer.from(chunk);
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

test("a 25 MB signed message: the DKIM check streams it (what it holds stays far below the message size)", async () => {
  const key = rsaKey();
  const dns = await startDnsServer({ "s1._domainkey.example.net": dkimEntry(key), "example.net": { TXT: ["v=spf1 ip4:127.0.0.1 -all"] } });
  try {
    const head = "From: <a@example.net>\r\nTo: <b@example.org>\r\nSubject: big\r\n\r\n";
    // The signature, computed over a stream too (dkimSign hashes what it reads, keeps no body).
    const message = Readable.from(
      (function* () {
        yield Buffer.from(head);
        yield* bodyChunks();
      })(),
    );
    const options = { canonicalization: "relaxed/relaxed", signatureData: [{ signingDomain: "example.net", selector: "s1", privateKey: key.privateKey }] };
    const signatureHeader = (await dkimSign(message, options as unknown as Parameters<typeof dkimSign>[1])).signatures;
    assert.match(signatureHeader, /^DKIM-Signature: /);

    const before = held();
    const rssBefore = process.memoryUsage().rss;
    let peak = before;
    const logs: Record<string, unknown>[] = [];
    const step = inboundCheckStep({
      hostname: "mx.example.org",
      settings: { dmarc: "report", spfRejectFail: false, maxLookups: 40, timeBudgetMs: 5000 },
      dns: new InboundDns({ servers: [dns.address], timeoutMs: 1000, cacheMaxSec: 60 }),
      trusted: () => false,
      log: { info: (f) => logs.push(f), warn: (f) => logs.push(f) },
    });
    const env = {
      mailFrom: "a@example.net",
      client: { ip: "127.0.0.1", helo: "c.example.net", listener: "mta" },
      senderVouched: false,
      recipients: [],
    } as unknown as NewEnvelope;
    const pipeline = new ContentPipeline([step], () => ({ envelope: env, headers: NO_FIELDS }), 64 * 1024);
    pipeline.push(Buffer.from(signatureHeader + head));
    let n = 0;
    for (const chunk of bodyChunks()) {
      pipeline.push(chunk);
      await turn();
      if (++n % 32 === 0) peak = Math.max(peak, held());
    }
    const outcome = await pipeline.finish();
    const rssGrowthMb = (process.memoryUsage().rss - rssBefore) / 1024 / 1024;
    assert.ok(outcome.ok);
    assert.match(outcome.headerPrefix ?? "", /\tdkim=pass header\.d=example\.net/);
    const growthMb = (peak - before) / 1024 / 1024;
    console.log(`inbound check of a 25 MB message: at most ${growthMb.toFixed(1)} MB held (heap + buffers), RSS growth ${rssGrowthMb.toFixed(1)} MB`);
    assert.ok(growthMb < 5, `the step held ${growthMb.toFixed(1)} MB`);
    assert.ok(rssGrowthMb < 20, `RSS grew ${rssGrowthMb.toFixed(1)} MB`);
  } finally {
    await dns.close();
  }
});

test("pushed faster than the verifier reads (no turn of the event loop), the step holds at most 4 MB and reports temperror", async () => {
  const dns = await startDnsServer({});
  try {
    const before = held();
    const step = inboundCheckStep({
      hostname: "mx.example.org",
      settings: { dmarc: "enforce", spfRejectFail: false, maxLookups: 40, timeBudgetMs: 5000 },
      dns: new InboundDns({ servers: [dns.address], timeoutMs: 1000, cacheMaxSec: 60 }),
      trusted: () => false,
      log: { info: () => undefined, warn: () => undefined },
    });
    const env = {
      mailFrom: "a@example.net",
      client: { ip: "127.0.0.1", helo: "c.example.net", listener: "mta" },
      senderVouched: false,
      recipients: [],
    } as unknown as NewEnvelope;
    const pipeline = new ContentPipeline([step], () => ({ envelope: env, headers: NO_FIELDS }), 64 * 1024);
    pipeline.push(Buffer.from("From: <a@example.net>\r\nDKIM-Signature: v=1; d=example.net; s=s1; a=rsa-sha256; bh=x; b=y; h=from\r\n\r\n"));
    let peak = before;
    let n = 0;
    for (const chunk of bodyChunks()) {
      pipeline.push(chunk);
      if (++n % 32 === 0) peak = Math.max(peak, held());
    }
    const outcome = await pipeline.finish();
    assert.ok(outcome.ok, "never a refusal for our own overload");
    assert.match(outcome.headerPrefix ?? "", /\tdkim=temperror \(DKIM verification fell behind the message\)/);
    const growthMb = (peak - before) / 1024 / 1024;
    assert.ok(growthMb < 8, `held ${growthMb.toFixed(1)} MB`);
  } finally {
    await dns.close();
  }
});
