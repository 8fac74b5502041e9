/**
 * A tiny authoritative DNS server for tests (RFC 1035 wire format over UDP and TCP on 127.0.0.1):
 * answers A, AAAA, MX, TXT, TLSA and CNAME from a zone given as data, NXDOMAIN for unknown names,
 * NODATA for known names without the asked type; the AD bit where the zone says so (a stand-in for
 * a validating resolver); an EDNS0 OPT record in a query is echoed (RFC 6891 §7). Enough for
 * node's dns.promises.Resolver with setServers(), and for dns-packet queries.
 */
import { createSocket, type Socket } from "node:dgram";
import { once } from "node:events";
import { createServer, type Server, type Socket as TcpSocket } from "node:net";

export interface ZoneEntry {
  A?: string[];
  AAAA?: string[];
  /** exchange "" or "." is the null MX of RFC 7505. */
  MX?: { preference: number; exchange: string }[];
  /** One string per record; longer than 255 octets, it is sent as several character-strings (RFC 7208 §3.3). */
  TXT?: string[];
  /** TLSA records (RFC 6698 §2.1), served for `_25._tcp.host` style names. */
  TLSA?: { usage: number; selector: number; matchingType: number; data: Buffer }[];
  /** This name is an alias: the answer carries the CNAME, then the target's records of the asked type. */
  CNAME?: string;
  /** Set the AD bit in answers about this name (and, through a CNAME, only if the target has it too). */
  ad?: boolean;
  /** Answer every query for this name with SERVFAIL (a temporary DNS failure). */
  servfail?: boolean;
  /** Over UDP, answer with TC set and no records, so the client asks again over TCP (RFC 7766 §5). */
  truncate?: boolean;
  /** Never answer (a timeout). */
  silent?: boolean;
}

export interface DnsServer {
  /** "127.0.0.1:port", ready for dns.servers / Resolver.setServers. */
  address: string;
  port: number;
  zone: Record<string, ZoneEntry>;
  /** "name TYPE" of every query received, in order. */
  queries: string[];
  close(): Promise<void>;
}

const TYPE = { A: 1, CNAME: 5, MX: 15, TXT: 16, AAAA: 28, OPT: 41, TLSA: 52 } as const;
const TYPE_NAME: Record<number, string> = { 1: "A", 5: "CNAME", 15: "MX", 16: "TXT", 28: "AAAA", 52: "TLSA" };

function encodeName(name: string): Buffer {
  const labels = name
    .replace(/\.$/, "")
    .split(".")
    .filter((l) => l !== "");
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, "ascii")])), Buffer.from([0])]);
}

function readName(msg: Buffer, offset: number): { name: string; end: number } {
  const labels: string[] = [];
  let i = offset;
  while (msg[i] !== 0) {
    const len = msg[i]!;
    labels.push(msg.toString("ascii", i + 1, i + 1 + len));
    i += 1 + len;
  }
  return { name: labels.join(".").toLowerCase(), end: i + 1 };
}

function ipv6Bytes(ip: string): Buffer {
  const [head, tail] = ip.split("::");
  const h = head ? head.split(":") : [];
  const t = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(parseInt(g, 16), i * 2);
  return out;
}

function rdataOf(type: number, entry: ZoneEntry): Buffer[] {
  if (type === TYPE.A) return (entry.A ?? []).map((ip) => Buffer.from(ip.split(".").map(Number)));
  if (type === TYPE.AAAA) return (entry.AAAA ?? []).map(ipv6Bytes);
  if (type === TYPE.MX) {
    return (entry.MX ?? []).map((mx) => {
      const pref = Buffer.alloc(2);
      pref.writeUInt16BE(mx.preference);
      return Buffer.concat([pref, mx.exchange === "" || mx.exchange === "." ? Buffer.from([0]) : encodeName(mx.exchange)]);
    });
  }
  if (type === TYPE.TXT) {
    return (entry.TXT ?? []).map((text) => {
      const bytes = Buffer.from(text, "utf8");
      const strings: Buffer[] = [];
      for (let i = 0; i < bytes.length || i === 0; i += 255) {
        const part = bytes.subarray(i, i + 255);
        strings.push(Buffer.from([part.length]), part);
      }
      return Buffer.concat(strings);
    });
  }
  if (type === TYPE.TLSA) {
    return (entry.TLSA ?? []).map((t) => Buffer.concat([Buffer.from([t.usage, t.selector, t.matchingType]), t.data]));
  }
  if (type === TYPE.CNAME && entry.CNAME !== undefined) return [encodeName(entry.CNAME)];
  return [];
}

function resourceRecord(owner: Buffer, type: number, rdata: Buffer): Buffer {
  const rr = Buffer.alloc(10);
  rr.writeUInt16BE(type, 0);
  rr.writeUInt16BE(1, 2); // IN
  rr.writeUInt32BE(60, 4);
  rr.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([owner, rr, rdata]);
}

/** The query's EDNS0 OPT record (RFC 6891 §6.1), if its additional section has one: its flags (DO). */
function queryOpt(query: Buffer, afterQuestion: number): { flags: number } | undefined {
  if (query.readUInt16BE(10) === 0 || query.length < afterQuestion + 11) return undefined;
  if (query[afterQuestion] !== 0 || query.readUInt16BE(afterQuestion + 1) !== TYPE.OPT) return undefined;
  return { flags: query.readUInt16BE(afterQuestion + 7) };
}

/** The answer to one query; null for a name marked `silent`. `overUdp`: a `truncate` name gets TC. */
export function answer(query: Buffer, zone: Record<string, ZoneEntry>, log: string[], overUdp = true): Buffer | null {
  const id = query.readUInt16BE(0);
  const { name, end } = readName(query, 12);
  const qtype = query.readUInt16BE(end);
  const question = query.subarray(12, end + 4);
  log.push(`${name} ${TYPE_NAME[qtype] ?? qtype}`);
  let entry = zone[name];
  if (entry?.silent) return null;
  const truncated = overUdp && entry?.truncate === true;
  const answers: Buffer[] = [];
  let ad = entry?.ad === true;
  let owner: Buffer = Buffer.from([0xc0, 0x0c]); // pointer to the question's name
  // Follow CNAMEs as a recursive resolver would (RFC 1034 §3.6.2), at most a few hops.
  for (let hops = 0; entry?.CNAME !== undefined && qtype !== TYPE.CNAME && !entry.servfail && !truncated && hops < 8; hops++) {
    answers.push(resourceRecord(owner, TYPE.CNAME, encodeName(entry.CNAME)));
    owner = encodeName(entry.CNAME);
    entry = zone[entry.CNAME.toLowerCase().replace(/\.$/, "")];
    ad &&= entry?.ad === true;
  }
  const rcode = entry === undefined ? 3 : entry.servfail ? 2 : 0; // NXDOMAIN, SERVFAIL, NOERROR
  if (entry && !entry.servfail && !truncated) for (const rdata of rdataOf(qtype, entry)) answers.push(resourceRecord(owner, qtype, rdata));
  const opt = queryOpt(query, end + 4);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  // QR, AA, TC when truncated, copy RD, AD when the zone says the data is authenticated.
  header.writeUInt16BE(0x8400 | (truncated ? 0x0200 : 0) | (query.readUInt16BE(2) & 0x0100) | (ad && rcode !== 2 ? 0x0020 : 0) | rcode, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers.length, 6);
  header.writeUInt16BE(opt ? 1 : 0, 10);
  // The OPT echo: root owner, type 41, payload size 1232, extended rcode 0, version 0, the DO bit as asked.
  const optRecord = opt ? Buffer.from([0, 0, TYPE.OPT, 0x04, 0xd0, 0, 0, (opt.flags >> 8) & 0x80, 0, 0, 0]) : Buffer.alloc(0);
  return Buffer.concat([header, question, ...answers, optRecord]);
}

/** TCP (RFC 1035 §4.2.2, RFC 7766): each message with a two-octet length prefix. */
function serveTcp(zone: Record<string, ZoneEntry>, log: string[]): Server {
  return createServer((conn) => {
    let buffered = Buffer.alloc(0);
    conn.on("error", () => undefined);
    conn.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const msg = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
        buffered = buffered.subarray(2 + msg.length);
        try {
          const reply = answer(msg, zone, log, false);
          if (reply) conn.write(Buffer.concat([Buffer.from([reply.length >> 8, reply.length & 0xff]), reply]));
        } catch {
          conn.destroy();
        }
      }
    });
  });
}

export async function startDnsServer(zone: Record<string, ZoneEntry>): Promise<DnsServer> {
  const queries: string[] = [];
  const lowerZone: Record<string, ZoneEntry> = {};
  for (const [k, v] of Object.entries(zone)) lowerZone[k.toLowerCase().replace(/\.$/, "")] = v;
  const tcp = serveTcp(lowerZone, queries);
  const connections = new Set<TcpSocket>();
  tcp.on("connection", (c) => {
    connections.add(c);
    c.on("close", () => connections.delete(c));
  });
  // UDP and TCP on one port: UDP picks it, TCP may find it taken, then both try again.
  for (let attempt = 0; ; attempt++) {
    const socket: Socket = createSocket("udp4");
    socket.on("message", (msg, rinfo) => {
      try {
        const reply = answer(msg, lowerZone, queries);
        if (reply) socket.send(reply, rinfo.port, rinfo.address);
      } catch {
        // a malformed query gets no answer
      }
    });
    socket.bind(0, "127.0.0.1");
    await once(socket, "listening");
    const port = socket.address().port;
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen(port, "127.0.0.1", () => {
          tcp.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      await new Promise<void>((resolve) => socket.close(() => resolve()));
      if (attempt >= 5) throw err;
      continue;
    }
    return {
      address: `127.0.0.1:${port}`,
      port,
      zone: lowerZone,
      queries,
      close: async () => {
        for (const c of connections) c.destroy();
        await Promise.all([new Promise<void>((resolve) => socket.close(() => resolve())), new Promise<void>((resolve) => tcp.close(() => resolve()))]);
      },
    };
  }
}
