/**
 * A tiny authoritative DNS server for tests (RFC 1035 wire format over UDP on 127.0.0.1):
 * answers A, AAAA, MX and TXT from a zone given as data, NXDOMAIN for unknown names, NODATA for known
 * names without the asked type. Enough for node's dns.promises.Resolver with setServers().
 */
import { createSocket, type Socket } from "node:dgram";
import { once } from "node:events";

export interface ZoneEntry {
  A?: string[];
  AAAA?: string[];
  /** exchange "" or "." is the null MX of RFC 7505. */
  MX?: { preference: number; exchange: string }[];
  /** One string per record; longer than 255 octets, it is sent as several character-strings (RFC 7208 §3.3). */
  TXT?: string[];
  /** Answer every query for this name with SERVFAIL (a temporary DNS failure). */
  servfail?: boolean;
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

const TYPE = { A: 1, MX: 15, TXT: 16, AAAA: 28 } as const;
const TYPE_NAME: Record<number, string> = { 1: "A", 15: "MX", 16: "TXT", 28: "AAAA" };

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
  return [];
}

export function answer(query: Buffer, zone: Record<string, ZoneEntry>, log: string[]): Buffer {
  const id = query.readUInt16BE(0);
  const { name, end } = readName(query, 12);
  const qtype = query.readUInt16BE(end);
  const question = query.subarray(12, end + 4);
  log.push(`${name} ${TYPE_NAME[qtype] ?? qtype}`);
  const entry = zone[name];
  const rcode = entry === undefined ? 3 : entry.servfail ? 2 : 0; // NXDOMAIN, SERVFAIL, NOERROR
  const records = entry && !entry.servfail ? rdataOf(qtype, entry) : [];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x8400 | (query.readUInt16BE(2) & 0x0100) | rcode, 2); // QR, AA, copy RD
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(records.length, 6);
  const answers = records.map((rdata) => {
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0); // pointer to the question's name
    rr.writeUInt16BE(qtype, 2);
    rr.writeUInt16BE(1, 4); // IN
    rr.writeUInt32BE(60, 6);
    rr.writeUInt16BE(rdata.length, 10);
    return Buffer.concat([rr, rdata]);
  });
  return Buffer.concat([header, question, ...answers]);
}

export async function startDnsServer(zone: Record<string, ZoneEntry>): Promise<DnsServer> {
  const socket: Socket = createSocket("udp4");
  const queries: string[] = [];
  const lowerZone: Record<string, ZoneEntry> = {};
  for (const [k, v] of Object.entries(zone)) lowerZone[k.toLowerCase().replace(/\.$/, "")] = v;
  socket.on("message", (msg, rinfo) => {
    try {
      socket.send(answer(msg, lowerZone, queries), rinfo.port, rinfo.address);
    } catch {
      // a malformed query gets no answer
    }
  });
  socket.bind(0, "127.0.0.1");
  await once(socket, "listening");
  const port = socket.address().port;
  return {
    address: `127.0.0.1:${port}`,
    port,
    zone: lowerZone,
    queries,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
