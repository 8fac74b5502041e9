/**
 * DKIM signing end to end: keys made with `postern dkim keygen` while the real server runs, the
 * records `postern dkim dns` prints served by the test DNS responder, mail sent with AUTH through
 * the submission port and with `postern sendmail`, relayed to a smarthost sink, and the arriving
 * signatures checked by mailauth and dkimpy. Also: rotation (pending keys never sign, activation
 * by DNS), unsigned alias mail, and the server's memory on a 25 MB message.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { runCli, startPostern, type Postern } from "./helpers/postern.js";
import { startSink, type Sink } from "../delivery/helpers/sink.js";
import { dkimDns, dkimpyVerify, mailauthVerify } from "../dkim/helpers/verifiers.js";

const ANN = { address: "ann@example.org", password: "ann-pass-12", senders: ["@example.org", "ann@alias.test"] };
const BIG = 25 * 1024 * 1024;

let sink: Sink;
let dns: Awaited<ReturnType<typeof dkimDns>>;
let server: Postern;

before(async () => {
  sink = await startSink({});
  dns = await dkimDns([]);
  server = await startPostern({
    users: [ANN],
    config: {
      relay: { smarthost: `127.0.0.1:${sink.port}` },
      localSubmit: { socket: "sendmail.sock" },
      dns: { servers: [dns.address] },
      limits: { authFailureDelayMs: 10, messageSize: BIG + 1024 * 1024 },
    },
  });
});
after(async () => {
  await server?.cleanup();
  await sink?.close();
  await dns?.close();
});

async function cli(...args: string[]): Promise<string> {
  const r = await runCli([...args, "--config", server.configPath]);
  assert.equal(r.code, 0, `postern ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

const zoneLines = (text: string) => text.split("\n").filter((l) => l.trim() !== "");

async function submit(from: string, subject: string, body: string | Buffer): Promise<void> {
  const t = nodemailer.createTransport({
    host: "127.0.0.1",
    port: server.ports.submission,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user: ANN.address, pass: ANN.password },
  });
  try {
    const head = `From: Ann <${from}>\r\nTo: bob@elsewhere.test\r\nSubject: ${subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n`;
    await t.sendMail({ envelope: { from, to: ["bob@elsewhere.test"] }, raw: Buffer.concat([Buffer.from(head), Buffer.from(body)]) });
  } finally {
    t.close();
  }
}

async function arrived(subject: string): Promise<Buffer> {
  const match = () => sink.messages.find((m) => m.data.includes(`Subject: ${subject}\r\n`));
  while (!match()) await sink.waitForMessages(sink.messages.length + 1, 60_000);
  return match()!.data;
}

const results = (v: { selector: string; result: string }[]) => v.map((x) => `${x.selector}:${x.result}`).sort();

test("keygen, dns, AUTH submission: two signatures that mailauth and dkimpy verify; tampering fails", async () => {
  await cli("dkim", "keygen", "example.org");
  const printed = zoneLines(await cli("dkim", "dns", "example.org"));
  assert.equal(printed.length, 2);
  for (const line of printed) assert.match(line, /^\S+\._domainkey\.example\.org\. IN TXT "v=DKIM1; k=(ed25519|rsa); p=/);
  dns.add(printed);
  const selectors = printed.map((l) => l.split(".")[0]!).sort();

  await submit("ann@example.org", "signed-1", "Hello Bob,\r\nsee you.\r\n");
  const data = await arrived("signed-1");
  assert.deepEqual(
    results(await mailauthVerify(data, dns.resolver)),
    selectors.map((s) => `${s}:pass`),
  );
  assert.deepEqual(
    results(await dkimpyVerify(data, dns.port)),
    selectors.map((s) => `${s}:pass`),
  );
  const queued = await server.waitForLog((l) => l.event === "queued" && Array.isArray(l.dkim) && l.dkim.length === 2);
  assert.deepEqual([...(queued.dkim as string[])].sort(), selectors);

  const text = data.toString("latin1");
  for (const tampered of [text.replace("see you.", "send money."), text.replace("From: Ann <ann@example.org>", "From: Ann <boss@example.org>")]) {
    const forged = Buffer.from(tampered, "latin1");
    assert.ok(!tampered.includes("see you.") || !tampered.includes("<ann@example.org>"));
    for (const v of [...(await mailauthVerify(forged, dns.resolver)), ...(await dkimpyVerify(forged, dns.port))]) assert.notEqual(v.result, "pass");
  }
});

test("mail with an alias domain without keys in From: goes out unsigned, and its log line names no selector", async () => {
  await submit("ann@alias.test", "alias-1", "not ours to sign\r\n");
  const data = await arrived("alias-1");
  assert.ok(!data.toString("latin1").includes("DKIM-Signature"));
  const queuedLine = await server.waitForLog((l) => l.event === "queued" && l.from === "ann@alias.test");
  assert.equal(queuedLine.dkim, undefined);
  assert.equal(server.logs.filter((l) => l.event === "queued" && l.from === "ann@alias.test").length, 1);
});

test("postern sendmail (the local injector): signed with both keys too", async () => {
  const r = await runCli(
    ["sendmail", "--socket", join(server.dir, "data/sendmail.sock"), "-f", "ann@example.org", "bob@elsewhere.test"],
    "From: ann@example.org\nSubject: local-1\n\nfrom cron\n",
  );
  assert.equal(r.code, 0, r.stderr);
  const data = await arrived("local-1");
  assert.deepEqual(
    (await mailauthVerify(data, dns.resolver)).map((v) => v.result),
    ["pass", "pass"],
  );
  assert.deepEqual(
    (await dkimpyVerify(data, dns.port)).map((v) => v.result),
    ["pass", "pass"],
  );
  const queued = await server.waitForLog((l) => l.event === "queued" && l.via === "local");
  assert.equal((queued.dkim as string[]).length, 2);
});

test("rotation: pending keys do not sign; activate --check-dns switches once DNS has them; retired keys stay listed", async () => {
  const before = zoneLines(await cli("dkim", "dns", "example.org"));
  const old = before.map((l) => l.split(".")[0]!).sort();
  await cli("dkim", "rotate", "example.org");
  const listed = zoneLines(await cli("dkim", "dns", "example.org"));
  assert.equal(listed.length, 4);
  const fresh = listed.filter((l) => !before.includes(l));
  const freshSelectors = fresh.map((l) => l.split(".")[0]!).sort();

  await submit("ann@example.org", "rotate-1", "still the old keys\r\n");
  assert.deepEqual(
    results(await mailauthVerify(await arrived("rotate-1"), dns.resolver)),
    old.map((s) => `${s}:pass`),
  );

  // Not published yet: nothing changes.
  const early = await runCli(["dkim", "activate", "example.org", "--check-dns", "--config", server.configPath]);
  assert.notEqual(early.code, 0);
  assert.match(early.stderr, /not published yet/);

  dns.add(fresh);
  await cli("dkim", "activate", "example.org", "--check-dns");
  await submit("ann@example.org", "rotate-2", "the new keys\r\n");
  const data = await arrived("rotate-2");
  assert.deepEqual(
    results(await mailauthVerify(data, dns.resolver)),
    freshSelectors.map((s) => `${s}:pass`),
  );
  assert.deepEqual(
    results(await dkimpyVerify(data, dns.port)),
    freshSelectors.map((s) => `${s}:pass`),
  );
  // The retired keys are still published (grace period), so mail signed before the switch verifies.
  assert.deepEqual(zoneLines(await cli("dkim", "dns", "example.org")).sort(), listed.sort());
  const list = await cli("dkim", "list", "example.org");
  for (const s of old) assert.match(list, new RegExp(`${s} \\S+ retired`));
});

/** VmRSS / VmHWM of a process, in bytes. */
async function memory(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)![1]) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

test("a 25 MB signed message: the server's resident memory grows by less than 20 MB, and the signatures verify", async () => {
  const line = "The quick brown fox jumps over the lazy dog; 0123456789 abcdefghij  \r\n";
  const body = Buffer.from(line.repeat(Math.floor((BIG - 4096) / line.length)));
  // Warm-up: one big unsigned message first, so the heap reaches the size that moving 25 MB through
  // TLS, the spool and delivery takes anyway (garbage collected lazily); a signer holding the
  // message would add its 25 MB on top of that.
  await submit("ann@alias.test", "big-unsigned", body);
  await arrived("big-unsigned");
  const warm = await memory(server.pid);
  process.stdout.write(`# 25 MB unsigned (warm-up): peak RSS ${(warm.hwm / 2 ** 20).toFixed(1)} MiB\n`);
  const start = await memory(server.pid);
  await writeFile(`/proc/${server.pid}/clear_refs`, "5"); // VmHWM := VmRSS: the peak from here on
  await submit("ann@example.org", "big-1", body);
  const queued = await server.waitForLog((l) => l.event === "queued" && l.from === "ann@example.org" && (l.size as number) > BIG - 8192);
  assert.equal((queued.dkim as string[]).length, 2);
  const data = await arrived("big-1");
  const peak = await memory(server.pid);
  const growth = peak.hwm - start.rss;
  process.stdout.write(
    `# 25 MB signed: RSS ${(start.rss / 2 ** 20).toFixed(1)} MiB → peak ${(peak.hwm / 2 ** 20).toFixed(1)} MiB (+${(growth / 2 ** 20).toFixed(1)} MiB)\n`,
  );
  assert.ok(growth < 20 * 1024 * 1024, `RSS grew by ${growth} bytes`);
  assert.deepEqual(
    (await mailauthVerify(data, dns.resolver)).map((v) => v.result),
    ["pass", "pass"],
  );
});
