/**
 * What happens to a new TCP connection before SMTP starts: the PROXY protocol header (trusted
 * proxies only), the connection limits on the real client address, the implicit-TLS handshake
 * (RFC 8314) with a deadline. Then the SMTP connection takes over, or the client gets 421 4.7.0.
 * The limiter slot is released exactly once, whichever way the connection ends.
 */
import type { Socket } from "node:net";
import type { SecureContext, TLSSocket } from "node:tls";
import { formatReply } from "../smtp/reply.js";
import type { ClientLimits } from "../policy/client-limits.js";
import { type NetworkList, unmapIPv4 } from "../policy/networks.js";
import type { ListenerConfig } from "../config/schema.js";
import { readProxyHeader } from "./proxy-protocol.js";
import { tlsInfo } from "./connection.js";
import { serverTlsSocket } from "./tls.js";
import type { Logger } from "./log.js";

export interface ClientInfo {
  /** The real client: the peer, or the source named by a trusted proxy's header. */
  ip: string;
  port: number;
  /** The proxy's own address when the client came through one. */
  proxiedBy?: string;
  /** Set on implicit-TLS listeners, after the handshake. */
  tls?: { version: string; cipher: string };
  /** Client is in limits.exempt (no per-IP limits, no tarpit). */
  exempt: boolean;
}

export interface AcceptOptions {
  listener: ListenerConfig;
  limits: ClientLimits;
  trustedProxies: NetworkList;
  proxyHeaderTimeoutMs: number;
  tlsHandshakeTimeoutMs: number;
  secureContext: SecureContext;
  log: Logger;
  /** Every open raw socket, so that closing the server can end them. */
  sockets: Set<Socket>;
  /** Starts SMTP on the (possibly TLS) socket; release must be called when it ends. */
  serve(socket: Socket, client: ClientInfo, release: () => void): void;
}

const ended = new WeakMap<Socket, Promise<void>>();

/**
 * Resolves when the connection on this raw socket is over. Not the raw socket's 'close': once
 * TLS (implicit or STARTTLS) owns the socket, only the TLS socket reports closing.
 */
export function connectionEnded(raw: Socket): Promise<void> {
  return ended.get(raw) ?? Promise.resolve();
}

/** Never rejects: whatever goes wrong ends this one connection, not the process. */
export async function acceptConnection(raw: Socket, o: AcceptOptions): Promise<void> {
  try {
    await accept(raw, o);
  } catch (err) {
    o.log.error({ event: "internal-error", err: String(err) }, "accepting a connection failed");
    raw.destroy();
  }
}

async function accept(raw: Socket, o: AcceptOptions): Promise<void> {
  let over!: () => void;
  ended.set(raw, new Promise<void>((resolve) => (over = resolve)));
  let slot: () => void = () => undefined;
  // Every way out comes through here, once: the limiter slot and the open-socket entry go back.
  const finish = () => {
    o.sockets.delete(raw);
    slot();
    over();
  };
  o.sockets.add(raw);
  raw.once("close", finish);
  // A reset before SMTP takes over must not become an unhandled 'error' event.
  raw.on("error", (err) => o.log.debug({ event: "socket-error", err: err.message }, "socket error"));
  const peer = unmapIPv4(raw.remoteAddress ?? "unknown");
  let ip = peer;
  let port = raw.remotePort ?? 0;
  let proxiedBy: string | undefined;

  if (o.listener.proxyProtocol) {
    // proxy-protocol.txt §4: a header from anyone but a known proxy would let a client pick its address.
    if (!o.trustedProxies.contains(peer)) {
      o.log.warn({ event: "proxy-refused", client: peer, reason: "peer is not a trusted proxy" }, "PROXY header from an untrusted peer");
      raw.destroy();
      return;
    }
    const result = await readProxyHeader(raw, { timeoutMs: o.proxyHeaderTimeoutMs });
    if (!result.ok) {
      o.log.warn({ event: "proxy-refused", client: peer, reason: result.reason }, "bad PROXY header");
      raw.destroy();
      return;
    }
    if (raw.destroyed) return;
    if (result.header.command === "proxy") {
      ip = result.header.source.ip;
      port = result.header.source.port;
      proxiedBy = peer;
    }
  }

  const admission = o.limits.admit(ip);
  if (admission.ok) slot = admission.release;

  let socket: Socket = raw;
  let tls: ClientInfo["tls"];
  if (o.listener.mode === "submissions") {
    const secure = await handshake(raw, o, ip);
    if (!secure) return finish();
    socket = secure;
    socket.once("close", finish);
    tls = tlsInfo(secure);
  }

  if (!admission.ok) {
    o.log.warn(
      { event: "connection-refused", client: ip, proxy: proxiedBy, listener: o.listener.mode, reason: admission.reason },
      "connection refused by a limit",
    );
    socket.end(formatReply(admission.reply));
    setTimeout(() => socket.destroy(), 5000).unref();
    return;
  }
  o.serve(socket, { ip, port, proxiedBy, tls, exempt: admission.exempt }, finish);
  // Paused while the PROXY header was read; bytes put back after it flow to the SMTP connection now.
  socket.resume();
}

/** RFC 8314 §3.3: the TLS handshake comes first on the implicit-TLS port; it gets a deadline. */
function handshake(raw: Socket, o: AcceptOptions, ip: string): Promise<TLSSocket | null> {
  return new Promise((resolve) => {
    let settled = false;
    // tls.ts: the listener's profile and no renegotiation, after a PROXY header as without one.
    const secure = serverTlsSocket(raw, o.secureContext);
    const settle = (result: TLSSocket | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      secure.removeListener("error", onError);
      // Late errors (a reset after a failed handshake) are not the process's business.
      secure.on("error", () => undefined);
      if (result === null) secure.destroy();
      resolve(result);
    };
    const onError = (err: Error) => {
      o.log.info({ event: "tls-failed", client: ip, err: err.message }, "TLS handshake failed");
      settle(null);
    };
    const timer = setTimeout(() => {
      o.log.info({ event: "tls-failed", client: ip, err: "handshake deadline" }, "TLS handshake timed out");
      settle(null);
    }, o.tlsHandshakeTimeoutMs);
    timer.unref();
    secure.on("error", onError);
    secure.once("secure", () => settle(secure));
    secure.once("close", () => settle(null));
  });
}
