/**
 * DANE lookups (RFC 7672 §2.2): TLSA of `_PORT._tcp.HOST`, asked of the configured resolvers with
 * `dns-packet` because node's resolver shows neither TLSA nor the AD bit. Nothing here validates
 * DNSSEC: with `dns.dnssec: trust-ad` the AD bit of a validating resolver we trust is the proof.
 */
import { createSocket } from "node:dgram";
import { getServers } from "node:dns";
import { isIP, connect as netConnect } from "node:net";
import { randomInt } from "node:crypto";
import * as packet from "dns-packet";
import type { TlsaRecord, TlsaResult, TlsaSource } from "./types.js";

export type DnssecMode = "off" | "trust-ad";

export interface TlsaResolverOptions {
  /** "off": DANE is not used and nothing is asked; "trust-ad": the resolver's AD bit is trusted. */
  mode: DnssecMode;
  /** "host", "host:port", "[v6]:port" (dns.servers); empty: the system's (node's dns.getServers()). */
  servers: string[];
  /** Per server tried, UDP and the TCP retry together. */
  timeoutMs: number;
}

/** What one TLSA query found, before any DANE decision. */
export interface TlsaAnswer {
  /** "NOERROR", "NXDOMAIN", "SERVFAIL", … */
  rcode: string;
  /** The AD bit of the answer (RFC 4035 §3.2.3). */
  authenticated: boolean;
  /** The TLSA records at the end of any CNAME chain in the answer. */
  records: TlsaRecord[];
  /** The name those records are at (the query name, or a CNAME target). */
  name: string;
}

/** The owner name of the TLSA records for SMTP to `host` (RFC 7672 §2.2.3, RFC 6698 §3). */
export function tlsaName(host: string, port = 25): string {
  return `_${port}._tcp.${host.replace(/\.$/, "").toLowerCase()}`;
}

/**
 * RFC 7672 §3.1.3: usages 0 (PKIX-TA) and 1 (PKIX-EE) are not for SMTP; only 2 (DANE-TA) and
 * 3 (DANE-EE) with selector 0/1 and matching type 0/1/2 count. A digest of the wrong length
 * could never match, so it is unusable too.
 */
export function isUsableTlsa(r: TlsaRecord): boolean {
  if (r.usage !== 2 && r.usage !== 3) return false;
  if (r.selector !== 0 && r.selector !== 1) return false;
  if (r.matchingType === 1) return r.data.length === 32;
  if (r.matchingType === 2) return r.data.length === 64;
  return r.matchingType === 0 && r.data.length > 0;
}

/** One record in presentation form, "3 1 1 ab12…" (RFC 6698 §2.2), hex lower-case. */
export function tlsaText(r: TlsaRecord): string {
  return `${r.usage} ${r.selector} ${r.matchingType} ${r.data.toString("hex")}`;
}

/** The records in presentation form, for logs, reports (RFC 8460 §4.4 policy-string) and `postern check`. */
export function tlsaPresentation(records: TlsaRecord[]): string[] {
  return records.map(tlsaText);
}

/** "host", "host:port", "[v6]" or "[v6]:port"; a bare IPv6 address has no port. */
export function parseServer(server: string): { host: string; port: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(server);
  if (bracketed) return { host: bracketed[1]!, port: bracketed[2] ? Number(bracketed[2]) : 53 };
  if (isIP(server) === 6) return { host: server, port: 53 };
  const m = /^([^:]+):(\d+)$/.exec(server);
  return m ? { host: m[1]!, port: Number(m[2]) } : { host: server, port: 53 };
}

/** The query: RD, AD set and EDNS0 with DO, so the resolver reports the AD bit (RFC 6840 §5.7). */
function adQuery(name: string, type: "TLSA" | "MX"): packet.Packet {
  return {
    type: "query",
    id: randomInt(0, 0x10000),
    flags: packet.RECURSION_DESIRED | packet.AUTHENTIC_DATA,
    questions: [{ type, name, class: "IN" }],
    additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: packet.DNSSEC_OK, flag_do: true, options: [] }],
  };
}

type Decoded = packet.DecodedPacket & { rcode?: string };

function isAnswerTo(r: Decoded, q: packet.Packet): boolean {
  const question = r.questions?.[0];
  const asked = q.questions![0]!;
  return r.type === "response" && r.id === q.id && question !== undefined && question.type === asked.type && question.name.toLowerCase() === asked.name;
}

function udpExchange(server: { host: string; port: number }, q: packet.Packet, deadline: number): Promise<Decoded> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(isIP(server.host) === 6 ? "udp6" : "udp4");
    let finished = false;
    const done = (err: Error | undefined, r?: Decoded) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.close();
      if (err) reject(err);
      else resolve(r!);
    };
    const timer = setTimeout(() => done(new Error(`no answer from ${server.host}:${server.port} within the timeout`)), Math.max(1, deadline - Date.now()));
    socket.on("error", (err) => done(err));
    socket.on("message", (msg, from) => {
      // Only the server asked may answer (with the query's id and question, checked below).
      if (from.port !== server.port || from.address !== server.host) return;
      let r: Decoded;
      try {
        r = packet.decode(msg) as Decoded;
      } catch {
        return; // not a DNS answer: keep waiting for the real one
      }
      if (isAnswerTo(r, q)) done(undefined, r);
    });
    socket.send(packet.encode(q), server.port, server.host, (err) => {
      if (err) done(err);
    });
  });
}

/** RFC 7766 §5: a truncated UDP answer is asked again over TCP, with a two-octet length prefix. */
function tcpExchange(server: { host: string; port: number }, q: packet.Packet, deadline: number): Promise<Decoded> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: server.host, port: server.port });
    let buffered = Buffer.alloc(0);
    const done = (err: Error | undefined, r?: Decoded) => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(r!);
    };
    const timer = setTimeout(() => done(new Error(`no TCP answer from ${server.host}:${server.port} within the timeout`)), Math.max(1, deadline - Date.now()));
    socket.on("error", (err) => done(err));
    socket.on("connect", () => socket.write(packet.streamEncode(q)));
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < 2 || buffered.length < 2 + buffered.readUInt16BE(0)) return;
      try {
        const r = packet.decode(buffered.subarray(2, 2 + buffered.readUInt16BE(0))) as Decoded;
        if (isAnswerTo(r, q)) done(undefined, r);
        else done(new Error("TCP answer does not match the query"));
      } catch (err) {
        done(err as Error);
      }
    });
    socket.on("end", () => done(new Error("TCP connection closed before the answer")));
  });
}

/** The TLSA records at the end of the CNAME chain that starts at `name` (RFC 7672 §2.2.2). */
function recordsAt(answers: packet.Answer[], name: string): { name: string; records: TlsaRecord[] } {
  let current = name.toLowerCase();
  for (let hops = 0; hops < 10; hops++) {
    const here = answers.filter((a) => a.name.toLowerCase() === current);
    const tlsa = here.filter((a): a is packet.TlsaAnswer => a.type === "TLSA");
    if (tlsa.length > 0) {
      return {
        name: current,
        records: tlsa.map((a) => ({
          usage: a.data.usage,
          selector: a.data.selector,
          matchingType: a.data.matchingType,
          data: Buffer.from(a.data.certificate),
        })),
      };
    }
    const cname = here.find((a): a is packet.StringAnswer => a.type === "CNAME");
    if (!cname) break;
    current = cname.data.toLowerCase().replace(/\.$/, "");
  }
  return { name: current, records: [] };
}

/**
 * Asks each server in turn (UDP, TCP when truncated). Throws when none gave an answer; an answer
 * with any rcode (SERVFAIL included) is returned as it came, for the caller to judge.
 */
async function queryAd(name: string, type: "TLSA" | "MX", servers: string[], timeoutMs: number): Promise<{ q: packet.Packet; r: Decoded }> {
  const list = (servers.length > 0 ? servers : getServers()).map(parseServer);
  if (list.length === 0) throw new Error("no DNS server configured");
  const q = adQuery(name.replace(/\.$/, "").toLowerCase(), type);
  let lastError: Error | undefined;
  let servfail: Decoded | undefined;
  for (const server of list) {
    const deadline = Date.now() + timeoutMs;
    try {
      let r = await udpExchange(server, q, deadline);
      if (r.flag_tc) r = await tcpExchange(server, q, deadline);
      // A resolver that failed (validation included) may be alone in failing: ask the next one.
      if (r.rcode === "SERVFAIL") {
        servfail = r;
        continue;
      }
      return { q, r };
    } catch (err) {
      lastError = err as Error;
    }
  }
  if (servfail) return { q, r: servfail };
  throw lastError ?? new Error("no answer");
}

/** Whether the MX answer for `domain` (records or their denial) has the AD bit; throws on SERVFAIL or no answer. */
export async function mxAuthenticated(domain: string, servers: string[], timeoutMs: number): Promise<boolean> {
  const { r } = await queryAd(domain, "MX", servers, timeoutMs);
  if (r.rcode === "SERVFAIL") throw new Error(`MX lookup of ${domain}: SERVFAIL`);
  return r.flag_ad === true;
}

/** TLSA at `name`, with the AD bit of the answer (see queryAd). */
export async function queryTlsa(name: string, servers: string[], timeoutMs: number): Promise<TlsaAnswer> {
  const { q, r } = await queryAd(name, "TLSA", servers, timeoutMs);
  const found = recordsAt(r.answers ?? [], q.questions![0]!.name);
  return { rcode: r.rcode ?? "NOERROR", authenticated: r.flag_ad, records: found.records, name: found.name };
}

/** The TLSA source the delivery path asks (RFC 7672 §2.2), per `dns.dnssec`. */
export class TlsaResolver implements TlsaSource {
  constructor(private readonly opts: TlsaResolverOptions) {}

  /**
   * TLSA of `_PORT._tcp.HOST`: "records" only when authenticated (AD=1); records without AD are
   * ignored as RFC 7672 §2.2 says; a failed lookup (SERVFAIL, timeout) is "temporary-failure",
   * which for a signed zone means "do not deliver to this host now" (§2.2).
   */
  async lookup(host: string, port = 25): Promise<TlsaResult> {
    if (this.opts.mode === "off") return { kind: "none", authenticated: false };
    const name = tlsaName(host, port);
    let answer: TlsaAnswer;
    try {
      answer = await queryTlsa(name, this.opts.servers, this.opts.timeoutMs);
    } catch (err) {
      return { kind: "temporary-failure", detail: `TLSA lookup of ${name} failed: ${(err as Error).message}` };
    }
    return tlsaResultOf(answer, name);
  }

  /**
   * RFC 7672 §2.2.1: the MX RRset (or the authenticated denial of one, for a domain that is its own
   * host) must be secure for the hosts' TLSA to count. A SERVFAIL (bogus) is no answer: it throws.
   */
  async mxAuthenticated(domain: string): Promise<boolean> {
    if (this.opts.mode === "off") return false;
    return mxAuthenticated(domain, this.opts.servers, this.opts.timeoutMs);
  }
}

/** The resolver `dns:` configures (dns.dnssec, dns.servers, dns.timeoutMs). */
export function tlsaResolverFor(dns: { dnssec: DnssecMode; servers: string[]; timeoutMs: number }): TlsaResolver {
  return new TlsaResolver({ mode: dns.dnssec, servers: dns.servers, timeoutMs: dns.timeoutMs });
}

/** The DANE reading of one answer (RFC 7672 §2.2): used by TlsaResolver and by `postern check`. */
export function tlsaResultOf(answer: TlsaAnswer, name: string): TlsaResult {
  if (answer.rcode === "NXDOMAIN") return { kind: "none", authenticated: answer.authenticated };
  if (answer.rcode !== "NOERROR") return { kind: "temporary-failure", detail: `TLSA lookup of ${name}: ${answer.rcode}` };
  if (answer.records.length === 0) return { kind: "none", authenticated: answer.authenticated };
  // §2.2: unauthenticated TLSA records are as if there were none.
  if (!answer.authenticated) return { kind: "none", authenticated: false };
  return { kind: "records", records: answer.records, usable: answer.records.filter(isUsableTlsa) };
}
