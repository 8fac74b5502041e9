/**
 * TLSA lookups (RFC 7672 §2.2) against the test DNS responder: records count only with the AD
 * bit; NXDOMAIN/NODATA is "none"; SERVFAIL and silence are temporary failures; mode off asks
 * nothing; a truncated answer is asked again over TCP; CNAMEs are followed.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { promises as dnsPromises } from "node:dns";
import { once } from "node:events";
import * as packet from "dns-packet";
import { parseServer, queryTlsa, TlsaResolver, tlsaPresentation } from "../../src/delivery/tls-policy/tlsa.js";
import type { TlsaRecord } from "../../src/delivery/tls-policy/types.js";
import { answer, type DnsServer, startDnsServer } from "../delivery/helpers/dns-server.js";

const sha256 = Buffer.alloc(32, 0xab);
const sha512 = Buffer.alloc(64, 0xcd);
const eeSpki: TlsaRecord = { usage: 3, selector: 1, matchingType: 1, data: sha256 };
const taCert: TlsaRecord = { usage: 2, selector: 0, matchingType: 2, data: sha512 };
const pkixEe: TlsaRecord = { usage: 1, selector: 0, matchingType: 1, data: sha256 };
const shortDigest: TlsaRecord = { usage: 3, selector: 1, matchingType: 1, data: Buffer.alloc(20, 1) };

describe("TLSA lookups", () => {
  let dns: DnsServer;
  const resolver = (mode: "off" | "trust-ad" = "trust-ad", timeoutMs = 2000) => new TlsaResolver({ mode, servers: [dns.address], timeoutMs });

  before(async () => {
    dns = await startDnsServer({
      "_25._tcp.signed.example": { TLSA: [eeSpki, taCert, pkixEe, shortDigest], ad: true },
      "_25._tcp.unsigned.example": { TLSA: [eeSpki] },
      "_25._tcp.nodata.example": { TXT: ["not tlsa"], ad: true },
      "_25._tcp.broken.example": { servfail: true, TLSA: [eeSpki], ad: true },
      "_25._tcp.silent.example": { silent: true },
      "_25._tcp.big.example": { truncate: true, TLSA: [eeSpki], ad: true },
      "_25._tcp.alias.example": { CNAME: "_25._tcp.target.example", ad: true },
      "_25._tcp.target.example": { TLSA: [taCert], ad: true },
      "_2525._tcp.port.example": { TLSA: [eeSpki], ad: true },
      "www.alias.example": { CNAME: "host.alias.example" },
      "signed-mx.example": { MX: [{ preference: 10, exchange: "mx.signed-mx.example" }], ad: true },
      "unsigned-mx.example": { MX: [{ preference: 10, exchange: "mx.unsigned-mx.example" }] },
      "self-host.example": { A: ["192.0.2.8"], ad: true },
      "bogus-mx.example": { servfail: true },
      "host.alias.example": { A: ["192.0.2.7"] },
    });
  });
  after(() => dns.close());

  it("records with the AD bit are returned, the usable ones apart (RFC 7672 §3.1.3)", async () => {
    const r = await resolver().lookup("signed.example", 25);
    assert.equal(r.kind, "records");
    assert.ok(r.kind === "records");
    assert.deepEqual(r.records, [eeSpki, taCert, pkixEe, shortDigest]);
    assert.deepEqual(r.usable, [eeSpki, taCert], "usage 1 and a digest of the wrong length are unusable");
    assert.ok(dns.queries.includes("_25._tcp.signed.example TLSA"));
  });

  it("the MX answer's AD bit (RFC 7672 §2.2.1): records or their authenticated denial; SERVFAIL throws; mode off asks nothing", async () => {
    assert.equal(await resolver().mxAuthenticated("signed-mx.example"), true);
    assert.ok(dns.queries.includes("signed-mx.example MX"));
    assert.equal(await resolver().mxAuthenticated("unsigned-mx.example"), false);
    assert.equal(await resolver().mxAuthenticated("self-host.example"), true, "no MX records, securely denied: the domain is its own host");
    await assert.rejects(resolver().mxAuthenticated("bogus-mx.example"), /SERVFAIL/);
    const before = dns.queries.length;
    assert.equal(await resolver("off").mxAuthenticated("signed-mx.example"), false);
    assert.equal(dns.queries.length, before);
  });

  it("the same records without the AD bit are ignored (RFC 7672 §2.2)", async () => {
    assert.deepEqual(await resolver().lookup("unsigned.example", 25), { kind: "none", authenticated: false });
  });

  it("NXDOMAIN and NODATA are none, with the AD bit as the answer had it", async () => {
    assert.deepEqual(await resolver().lookup("absent.example", 25), { kind: "none", authenticated: false });
    assert.deepEqual(await resolver().lookup("nodata.example", 25), { kind: "none", authenticated: true });
  });

  it("SERVFAIL and no answer at all are temporary failures", async () => {
    const servfail = await resolver().lookup("broken.example", 25);
    assert.equal(servfail.kind, "temporary-failure");
    assert.match(servfail.kind === "temporary-failure" ? servfail.detail : "", /_25\._tcp\.broken\.example: SERVFAIL/);
    const silent = await resolver("trust-ad", 300).lookup("silent.example", 25);
    assert.equal(silent.kind, "temporary-failure");
    assert.match(silent.kind === "temporary-failure" ? silent.detail : "", /no answer/);
  });

  it("mode off asks nothing", async () => {
    const before = dns.queries.length;
    assert.deepEqual(await resolver("off").lookup("signed.example", 25), { kind: "none", authenticated: false });
    assert.equal(dns.queries.length, before);
  });

  it("a truncated UDP answer is asked again over TCP", async () => {
    const r = await resolver().lookup("big.example", 25);
    assert.equal(r.kind, "records");
    assert.equal(dns.queries.filter((q) => q === "_25._tcp.big.example TLSA").length, 2, "once over UDP, once over TCP");
  });

  it("a CNAME is followed to the records of its target; the port names the record", async () => {
    const r = await resolver().lookup("alias.example", 25);
    assert.ok(r.kind === "records", JSON.stringify(r));
    assert.deepEqual(r.records, [taCert]);
    const raw = await queryTlsa("_25._tcp.alias.example", [dns.address], 2000);
    assert.equal(raw.name, "_25._tcp.target.example");
    assert.equal((await resolver().lookup("port.example", 2525)).kind, "records");
    assert.equal((await resolver().lookup("port.example", 25)).kind, "none");
    // Node's own resolver follows the responder's CNAMEs too (A lookups through an alias).
    const node = new dnsPromises.Resolver();
    node.setServers([dns.address]);
    assert.deepEqual(await node.resolve4("www.alias.example"), ["192.0.2.7"]);
  });

  it("the query sets RD and AD and carries EDNS0 with DO (RFC 6840 §5.7)", async () => {
    const seen: Buffer[] = [];
    const socket = createSocket("udp4");
    socket.on("message", (msg, rinfo) => {
      seen.push(msg);
      socket.send(answer(msg, { "_25._tcp.mx.example": { TLSA: [eeSpki], ad: true } }, [])!, rinfo.port, rinfo.address);
    });
    socket.bind(0, "127.0.0.1");
    await once(socket, "listening");
    try {
      const r = await new TlsaResolver({ mode: "trust-ad", servers: [`127.0.0.1:${socket.address().port}`], timeoutMs: 2000 }).lookup("MX.example.", 25);
      assert.equal(r.kind, "records");
      const q = packet.decode(seen[0]!);
      assert.ok(q.flag_rd && q.flag_ad);
      assert.deepEqual(q.questions, [{ name: "_25._tcp.mx.example", type: "TLSA", class: "IN" }]);
      const opt = q.additionals?.find((a) => a.type === "OPT") as packet.OptAnswer | undefined;
      assert.ok(opt?.flag_do, "DO bit set");
    } finally {
      socket.close();
    }
  });

  it("presentation form and server strings", () => {
    assert.deepEqual(tlsaPresentation([eeSpki]), [`3 1 1 ${"ab".repeat(32)}`]);
    assert.deepEqual(parseServer("127.0.0.1:5353"), { host: "127.0.0.1", port: 5353 });
    assert.deepEqual(parseServer("::1"), { host: "::1", port: 53 });
    assert.deepEqual(parseServer("[::1]:5353"), { host: "::1", port: 5353 });
    assert.deepEqual(parseServer("9.9.9.9"), { host: "9.9.9.9", port: 53 });
  });
});
