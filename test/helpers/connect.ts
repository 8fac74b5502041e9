/**
 * A client connection to a test server on 127.0.0.1, resolved once it is established (TCP, or
 * the TLS handshake with the server's self-signed certificate accepted). `over`: start TLS on an
 * existing connection (after STARTTLS, or after a PROXY header); `port` is then unused.
 */
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";

export async function connectLocal(port: number, opts: { tls?: boolean; over?: Socket } = {}): Promise<Socket> {
  const socket = opts.tls
    ? tlsConnect({ ...(opts.over ? { socket: opts.over } : { host: "127.0.0.1", port }), rejectUnauthorized: false, servername: "localhost" })
    : (opts.over ?? netConnect({ host: "127.0.0.1", port }));
  if (opts.over && !opts.tls) return socket;
  await new Promise<void>((ok, fail) => {
    socket.once(opts.tls ? "secureConnect" : "connect", () => ok());
    socket.once("error", fail);
  });
  return socket;
}

/** STARTTLS on a client socket: its plain-text listeners go, the TLS socket that replaces it comes back. */
export function upgradeLocal(raw: Socket): Promise<Socket> {
  raw.removeAllListeners("data");
  raw.removeAllListeners("close");
  return connectLocal(0, { tls: true, over: raw });
}
