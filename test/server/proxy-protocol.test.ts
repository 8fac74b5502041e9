/**
 * PROXY protocol v1 and v2 (HAProxy proxy-protocol.txt): the parser on its own, then the real
 * server behind a "load balancer" that is this test — only trusted peers may send a header, and the
 * address in it is what the greeting, per-IP limits, mynetworks and Received: see.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { LISTENER_MODES } from "../../src/base/listener-mode.js";
import { parseProxyHeader, V2_SIGNATURE } from "../../src/server/proxy-protocol.js";
import { RawSmtp } from "../e2e/helpers/raw-smtp.js";
import { startTestServer, type TestServer } from "./helpers.js";

function v2(opts: { command?: number; family?: number; address?: Buffer; tlvs?: [number, string][] } = {}): Buffer {
  const address = opts.address ?? Buffer.from([192, 0, 2, 7, 127, 0, 0, 1, 0x30, 0x39, 0x00, 0x19]);
  const tlvs = Buffer.concat(
    (opts.tlvs ?? []).map(([type, value]) => {
      const v = Buffer.from(value, "latin1");
      const head = Buffer.alloc(3);
      head[0] = type;
      head.writeUInt16BE(v.length, 1);
      return Buffer.concat([head, v]);
    }),
  );
  const head = Buffer.alloc(4);
  head[0] = 0x20 | (opts.command ?? 1);
  head[1] = opts.family ?? 0x11;
  head.writeUInt16BE(address.length + tlvs.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, address, tlvs]);
}

/** An IPv6 address block (source, destination, ports 12345 → 25) for a v2 header. */
const ipv6Block = (src: string, dst: string) =>
  Buffer.concat([Buffer.from(expand(src), "hex"), Buffer.from(expand(dst), "hex"), Buffer.from([0x30, 0x39, 0x00, 0x19])]);
function expand(ip: string): string {
  const [head, tail] = ip.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  return [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t].map((g) => g.padStart(4, "0")).join("");
}

test("v1 TCP4, TCP6 and UNKNOWN headers parse; the header length excludes what follows", () => {
  const r4 = parseProxyHeader(Buffer.from("PROXY TCP4 192.0.2.7 198.51.100.1 12345 25\r\nEHLO"));
  assert.ok(r4.status === "ok" && r4.header.command === "proxy");
  assert.deepEqual(r4.header.source, { ip: "192.0.2.7", port: 12345 });
  assert.equal(r4.length, "PROXY TCP4 192.0.2.7 198.51.100.1 12345 25\r\n".length);
  const r6 = parseProxyHeader(Buffer.from("PROXY TCP6 2001:db8::7 2001:db8::1 4000 587\r\n"));
  assert.ok(r6.status === "ok" && r6.header.command === "proxy" && r6.header.source.ip === "2001:db8::7");
  const unknown = parseProxyHeader(Buffer.from("PROXY UNKNOWN ffff:f...f:ffff 0 0\r\n"));
  assert.ok(unknown.status === "ok" && unknown.header.command === "local");
});

test("v1: truncated is incomplete; garbage, wrong families, bad ports and overlong lines are invalid", () => {
  assert.equal(parseProxyHeader(Buffer.from("PROX")).status, "incomplete");
  assert.equal(parseProxyHeader(Buffer.from("PROXY TCP4 192.0.2.7 198.51")).status, "incomplete");
  assert.equal(parseProxyHeader(Buffer.from("EHLO x\r\n")).status, "invalid");
  assert.equal(parseProxyHeader(Buffer.from("PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n")).status, "invalid");
  assert.equal(parseProxyHeader(Buffer.from("PROXY TCP4 192.0.2.7 192.0.2.1 65536 25\r\n")).status, "invalid");
  assert.equal(parseProxyHeader(Buffer.from("PROXY TCP4 192.0.2.7 192.0.2.1 025 25\r\n")).status, "invalid");
  assert.equal(parseProxyHeader(Buffer.from("PROXY TCP4 192.0.2.7 192.0.2.1 1 2 3\r\n")).status, "invalid");
  assert.equal(parseProxyHeader(Buffer.from("PROXY " + "x".repeat(110))).status, "invalid");
  assert.equal(parseProxyHeader(Buffer.from("PROXY TCP4 192.0.2.7\n192.0.2.1 1 2\r\n")).status, "invalid");
});

test("v2: IPv4 and IPv6 with TLVs, LOCAL, and malformed headers", () => {
  const tlvs: [number, string][] = [
    [0x01, "smtp"],
    [0x02, "mail.example.org"],
    [0x04, ""],
  ];
  const r = parseProxyHeader(Buffer.concat([v2({ tlvs }), Buffer.from("rest")]));
  assert.ok(r.status === "ok" && r.header.command === "proxy");
  assert.deepEqual(r.header.source, { ip: "192.0.2.7", port: 12345 });
  assert.deepEqual(
    r.header.tlvs.map((t) => [t.type, t.value.toString()]),
    tlvs,
  );
  assert.equal(r.length, v2({ tlvs }).length);
  const r6 = parseProxyHeader(v2({ family: 0x21, address: ipv6Block("2001:db8::7", "2001:db8::1") }));
  assert.ok(r6.status === "ok" && r6.header.command === "proxy" && r6.header.source.ip === "2001:db8::7");
  const mapped = parseProxyHeader(v2({ family: 0x21, address: ipv6Block("::ffff:c000:207", "2001:db8::1") }));
  assert.ok(mapped.status === "ok" && mapped.header.command === "proxy" && mapped.header.source.ip === "192.0.2.7");
  const local = parseProxyHeader(v2({ command: 0, family: 0, address: Buffer.alloc(0) }));
  assert.ok(local.status === "ok" && local.header.command === "local");

  const full = v2({ tlvs });
  assert.equal(parseProxyHeader(full.subarray(0, 10)).status, "incomplete");
  assert.equal(parseProxyHeader(full.subarray(0, full.length - 1)).status, "incomplete");
  const badTlv = v2({ tlvs });
  badTlv.writeUInt16BE(badTlv.readUInt16BE(14) - 1, 14); // the last TLV now runs past the block
  assert.equal(parseProxyHeader(badTlv.subarray(0, badTlv.length - 1)).status, "invalid");
  const badVersion = Buffer.from(full);
  badVersion[12] = 0x11;
  assert.equal(parseProxyHeader(badVersion).status, "invalid");
  assert.equal(parseProxyHeader(v2({ family: 0x12 })).status, "invalid", "UDP is not a stream");
  assert.equal(parseProxyHeader(v2({ address: Buffer.alloc(5000) })).status, "invalid", "size bound");
  assert.equal(parseProxyHeader(v2({ address: Buffer.alloc(8) })).status, "invalid", "short IPv4 block");
});

const proxied = (extra: Record<string, unknown> = {}) =>
  startTestServer({
    trustedProxies: ["127.0.0.1"],
    mynetworks: ["192.0.2.0/24"],
    listeners: LISTENER_MODES.map((mode) => ({ address: "127.0.0.1", port: 0, mode, proxyProtocol: true })),
    ...extra,
  });

async function ehloSeenAs(_t: TestServer, port: number, prelude: Buffer | string, tls = false): Promise<string> {
  const c = await RawSmtp.open(port, { prelude, tls });
  assert.equal((await c.reply()).code, 220);
  const r = await c.expect("EHLO proxy.test", 250);
  c.close();
  return /\[([^\]]+)\]/.exec(r.lines[0]!)![1]!;
}

test("the server sees the client named by a trusted proxy: v1 TCP4, TCP6, UNKNOWN and v2 with TLVs", async () => {
  const t = await proxied();
  try {
    assert.equal(await ehloSeenAs(t, t.ports.mta, "PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n"), "192.0.2.7");
    assert.equal(await ehloSeenAs(t, t.ports.mta, "PROXY TCP6 2001:db8::7 2001:db8::1 40000 25\r\n"), "2001:db8::7");
    assert.equal(await ehloSeenAs(t, t.ports.mta, "PROXY UNKNOWN\r\n"), "127.0.0.1");
    assert.equal(
      await ehloSeenAs(
        t,
        t.ports.submission,
        v2({
          tlvs: [
            [0x02, "mail.example.org"],
            [0x05, "id-1"],
          ],
        }),
      ),
      "192.0.2.7",
    );
    const connectLine = await t.waitForLog((l) => l.event === "connect" && l.client === "2001:db8::7");
    assert.equal(connectLine.proxy, "127.0.0.1");
  } finally {
    await t.stop();
  }
});

test("implicit TLS (465) behind PROXY: the header comes before the TLS handshake", async () => {
  const t = await proxied();
  try {
    assert.equal(await ehloSeenAs(t, t.ports.submissions, v2(), true), "192.0.2.7");
    assert.equal(await ehloSeenAs(t, t.ports.submissions, "PROXY TCP4 198.51.100.9 127.0.0.1 1 465\r\n", true), "198.51.100.9");
  } finally {
    await t.stop();
  }
});

async function closedWithoutReply(port: number, bytes: Buffer | string | null): Promise<string> {
  const s = connect(port, "127.0.0.1");
  let got = "";
  s.on("data", (d) => (got += d.toString()));
  s.on("error", () => undefined);
  await new Promise((r) => s.once("connect", r));
  if (bytes !== null) s.write(bytes);
  await new Promise((r) => s.once("close", r));
  return got;
}

test("garbage, truncated and slow headers close the connection before any greeting", async () => {
  const t = await proxied({ limits: { proxyHeaderTimeoutMs: 300 } });
  try {
    assert.equal(await closedWithoutReply(t.ports.mta, "EHLO no-header.test\r\n"), "");
    await t.waitForLog((l) => l.event === "proxy-refused" && l.reason === "not a PROXY protocol header");
    assert.equal(await closedWithoutReply(t.ports.mta, "PROXY TCP4 192.0.2.7 127.0."), "");
    await t.waitForLog((l) => l.event === "proxy-refused" && l.reason === "no header in time");
    assert.equal(await closedWithoutReply(t.ports.submissions, v2().subarray(0, 20)), "");
    assert.equal(await closedWithoutReply(t.ports.mta, null), "");
    assert.equal(await closedWithoutReply(t.ports.mta, Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])])), "");
    await t.waitForLog((l) => l.event === "proxy-refused" && l.reason === "v2 header larger than our bound");
    await t.waitForNoConnections();
  } finally {
    await t.stop();
  }
});

test("a header from a peer that is not a trusted proxy is not believed: the connection is closed", async () => {
  const t = await startTestServer({
    trustedProxies: ["127.0.0.1"],
    listeners: [{ address: "127.0.0.1", port: 0, mode: "mta", proxyProtocol: true, trustedProxies: ["192.0.2.1"] }],
  });
  try {
    assert.equal(await closedWithoutReply(t.server.listeners[0]!.port, "PROXY TCP4 192.0.2.7 127.0.0.1 1 25\r\n"), "");
    await t.waitForLog((l) => l.event === "proxy-refused" && l.client === "127.0.0.1" && l.reason === "peer is not a trusted proxy");
    assert.equal(t.server.limits().admitted, 0);
  } finally {
    await t.stop();
  }
});

test("mynetworks relaying, per-IP limits and Received: are decided on the proxied client address", async () => {
  const t = await proxied({ limits: { connections: { perIp: 1 } }, relay: {} });
  try {
    await t.server.store.addUser("john@example.org", "pw-john-123");
    const inside = await RawSmtp.open(t.ports.mta, { prelude: "PROXY TCP4 192.0.2.7 127.0.0.1 1 25\r\n" });
    await inside.reply();
    await inside.expect("EHLO inside.test", 250);
    await inside.expect("MAIL FROM:<a@inside.test>", 250);
    await inside.expect("RCPT TO:<someone@elsewhere.test>", 250);
    await inside.expect("RSET", 250);

    const sameIp = await RawSmtp.open(t.ports.mta, { prelude: "PROXY TCP4 192.0.2.7 127.0.0.1 2 25\r\n" });
    assert.match((await sameIp.reply()).text, /^421 4\.7\.0 /, "per-IP limit counts the real client, not the proxy");

    const outside = await RawSmtp.open(t.ports.mta, { prelude: "PROXY TCP4 198.51.100.7 127.0.0.1 1 25\r\n" });
    await outside.reply();
    await outside.expect("EHLO outside.test", 250);
    await outside.expect("MAIL FROM:<a@outside.test>", 250);
    const denied = await outside.cmd("RCPT TO:<someone@elsewhere.test>");
    assert.match(denied.text, /^554 5\.7\.1 /);
    await outside.expect("RCPT TO:<john@example.org>", 250);
    await outside.expect("DATA", 354);
    const queued = await outside.cmd("Subject: via proxy\r\n\r\nhello\r\n.");
    assert.equal(queued.code, 250);
    outside.close();
    inside.close();

    await t.waitForLog((l) => l.event === "delivered");
    const dir = join(t.dir, "mail/example.org/john/new");
    const [file] = await readdir(dir);
    const message = await readFile(join(dir, file!), "utf8");
    assert.match(message, /^Received: from outside\.test \(.*\[198\.51\.100\.7\]/m);
    assert.doesNotMatch(message, /127\.0\.0\.1/);
  } finally {
    await t.stop();
  }
});
