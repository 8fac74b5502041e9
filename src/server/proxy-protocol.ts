/**
 * The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy's proxy-protocol.txt defines
 * them: a load balancer puts one header in front of the client's bytes naming the real client.
 * Read only on listeners that opt in and only from trusted proxies, before the greeting (and before
 * the TLS handshake on implicit-TLS ports), with a deadline and a size bound.
 */
import { isIP, type Socket } from "node:net";
import { unmapIPv4 } from "../policy/networks.js";

/** proxy-protocol.txt §2.1: a v1 line is at most 107 bytes including CRLF. */
const V1_MAX = 107;
/** §2.2: the 12-byte v2 signature. */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from("PROXY ", "latin1");
/**
 * Our bound on a v2 header (16 + addresses + TLVs). The format allows 64 KiB of TLVs; real proxies
 * send a few hundred bytes (addresses ≤ 216, SNI, ALPN, SSL info), and we read nothing we do not need.
 */
export const V2_MAX = 16 + 2048;

export interface ProxyTlv {
  type: number;
  value: Buffer;
}

export type ProxyHeader =
  /** The proxy forwards a client: use these addresses. */
  | { version: 1 | 2; command: "proxy"; source: { ip: string; port: number }; destination: { ip: string; port: number }; tlvs: ProxyTlv[] }
  /** v1 UNKNOWN, v2 LOCAL or an unspecified/unix family: the connection's own endpoints count (§2.1, §2.2). */
  | { version: 1 | 2; command: "local"; tlvs: ProxyTlv[] };

export type ParseResult = { status: "incomplete" } | { status: "ok"; header: ProxyHeader; length: number } | { status: "invalid"; reason: string };

const INCOMPLETE: ParseResult = { status: "incomplete" };
const invalid = (reason: string): ParseResult => ({ status: "invalid", reason });

/** Parses a header at the start of buf. Garbage is reported as soon as the first bytes rule both versions out. */
export function parseProxyHeader(buf: Buffer): ParseResult {
  if (startsLike(buf, V2_SIGNATURE)) return buf.length < V2_SIGNATURE.length ? INCOMPLETE : parseV2(buf);
  if (startsLike(buf, V1_PREFIX)) return buf.length < V1_PREFIX.length ? INCOMPLETE : parseV1(buf);
  return invalid("not a PROXY protocol header");
}

/** buf is a prefix of sig, or sig a prefix of buf. */
function startsLike(buf: Buffer, sig: Buffer): boolean {
  const n = Math.min(buf.length, sig.length);
  return buf.subarray(0, n).equals(sig.subarray(0, n));
}

function parseV1(buf: Buffer): ParseResult {
  const end = buf.indexOf("\r\n", 0, "latin1");
  if (end < 0) return buf.length >= V1_MAX ? invalid("v1 header longer than 107 bytes") : INCOMPLETE;
  if (end + 2 > V1_MAX) return invalid("v1 header longer than 107 bytes");
  const line = buf.toString("latin1", 0, end);
  if (!/^[\x20-\x7e]*$/.test(line)) return invalid("v1 header with control bytes");
  const parts = line.split(" ");
  const length = end + 2;
  // §2.1: with UNKNOWN the rest of the line is ignored and the real connection endpoints are used.
  if (parts[1] === "UNKNOWN") return { status: "ok", header: { version: 1, command: "local", tlvs: [] }, length };
  if (parts.length !== 6 || (parts[1] !== "TCP4" && parts[1] !== "TCP6")) return invalid("malformed v1 header");
  const family = parts[1] === "TCP4" ? 4 : 6;
  const [, , srcIp, dstIp, srcPort, dstPort] = parts as [string, string, string, string, string, string];
  if (isIP(srcIp) !== family || isIP(dstIp) !== family) return invalid("v1 address does not match its family");
  const sp = port(srcPort);
  const dp = port(dstPort);
  if (sp === null || dp === null) return invalid("malformed v1 port");
  return {
    status: "ok",
    header: { version: 1, command: "proxy", source: { ip: unmapIPv4(srcIp), port: sp }, destination: { ip: dstIp, port: dp }, tlvs: [] },
    length,
  };
}

/** §2.1: ports are decimal 0..65535 without leading zeros. */
function port(text: string): number | null {
  if (!/^(0|[1-9]\d{0,4})$/.test(text)) return null;
  const n = Number(text);
  return n <= 65535 ? n : null;
}

function parseV2(buf: Buffer): ParseResult {
  if (buf.length < 16) return INCOMPLETE;
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return invalid("unsupported v2 version");
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return invalid("unknown v2 command");
  const famProto = buf[13]!;
  const addrLen = buf.readUInt16BE(14);
  const length = 16 + addrLen;
  if (length > V2_MAX) return invalid("v2 header larger than our bound");
  if (buf.length < length) return INCOMPLETE;
  const body = buf.subarray(16, length);
  const family = famProto >> 4;
  const transport = famProto & 0x0f;
  let addressBytes = 0;
  let source: { ip: string; port: number } | undefined;
  let destination: { ip: string; port: number } | undefined;
  // §2.2: LOCAL (health checks by the proxy itself) ignores the address block.
  if (cmd === 1 && family !== 0 && family !== 3) {
    if (transport !== 1) return invalid("v2 transport is not a stream (TCP)");
    if (family === 1) {
      addressBytes = 12;
      if (body.length < 12) return invalid("v2 IPv4 address block too short");
      source = { ip: ipv4(body.subarray(0, 4)), port: body.readUInt16BE(8) };
      destination = { ip: ipv4(body.subarray(4, 8)), port: body.readUInt16BE(10) };
    } else if (family === 2) {
      addressBytes = 36;
      if (body.length < 36) return invalid("v2 IPv6 address block too short");
      source = { ip: ipv6(body.subarray(0, 16)), port: body.readUInt16BE(32) };
      destination = { ip: ipv6(body.subarray(16, 32)), port: body.readUInt16BE(34) };
    } else {
      return invalid("unknown v2 address family");
    }
  } else if (cmd === 1 && family === 3) {
    addressBytes = Math.min(216, body.length);
  }
  const tlvs = parseTlvs(body.subarray(addressBytes));
  if (tlvs === null) return invalid("malformed v2 TLV");
  const header: ProxyHeader = source && destination ? { version: 2, command: "proxy", source, destination, tlvs } : { version: 2, command: "local", tlvs };
  return { status: "ok", header, length };
}

/** §2.2: TLVs are type (1 byte), length (2 bytes, big-endian), value; they must fill the block exactly. */
function parseTlvs(block: Buffer): ProxyTlv[] | null {
  const tlvs: ProxyTlv[] = [];
  let i = 0;
  while (i < block.length) {
    if (i + 3 > block.length) return null;
    const len = block.readUInt16BE(i + 1);
    if (i + 3 + len > block.length) return null;
    tlvs.push({ type: block[i]!, value: Buffer.from(block.subarray(i + 3, i + 3 + len)) });
    i += 3 + len;
  }
  return tlvs;
}

function ipv4(b: Buffer): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

function ipv6(b: Buffer): string {
  // An IPv4-mapped address (::ffff:a.b.c.d) is the IPv4 client, as unmapIPv4 does for sockets.
  if (b.subarray(0, 10).every((x) => x === 0) && b.readUInt16BE(10) === 0xffff) return ipv4(b.subarray(12));
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  // Compressed the way node reports socket addresses, so logs and CIDR checks see one spelling.
  return new URL(`http://[${groups.join(":")}]`).hostname.slice(1, -1);
}

export type ReadResult = { ok: true; header: ProxyHeader } | { ok: false; reason: string };

/**
 * Reads one header from a fresh socket. Bytes after it are put back (socket.unshift) for whoever
 * reads next: the SMTP connection, or the TLS handshake on an implicit-TLS port.
 */
export function readProxyHeader(socket: Socket, opts: { timeoutMs: number }): Promise<ReadResult> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const done = (result: ReadResult) => {
      clearTimeout(timer);
      socket.removeListener("data", onData);
      socket.removeListener("close", onClose);
      socket.pause();
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const parsed = parseProxyHeader(buf);
      if (parsed.status === "incomplete") {
        if (buf.length > V2_MAX) done({ ok: false, reason: "header too large" });
        return;
      }
      if (parsed.status === "invalid") return done({ ok: false, reason: parsed.reason });
      done({ ok: true, header: parsed.header });
      if (buf.length > parsed.length) socket.unshift(buf.subarray(parsed.length));
    };
    const onClose = () => done({ ok: false, reason: "closed before the header" });
    const timer = setTimeout(() => done({ ok: false, reason: "no header in time" }), opts.timeoutMs);
    timer.unref();
    socket.on("data", onData);
    socket.once("close", onClose);
  });
}
