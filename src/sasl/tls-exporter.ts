/** RFC 9266 `tls-exporter` channel binding data, for SCRAM -PLUS on both sides of a TLS connection. */
import type { TLSSocket } from "node:tls";

/** RFC 9266 §2: the exporter label. */
export const TLS_EXPORTER_LABEL = "EXPORTER-Channel-Binding";

/**
 * 32 bytes of exported keying material with no context (RFC 9266 §2; in TLS 1.3 an empty context
 * is the same as none, RFC 8446 §7.5). TLS 1.3 only: over TLS 1.2 without extended master secret
 * the value is not unique to the connection (RFC 9266 §3), so there is no binding (null).
 */
export function tlsExporterBinding(socket: TLSSocket): Buffer | null {
  if (socket.destroyed || socket.getProtocol() !== "TLSv1.3") return null;
  try {
    return socket.exportKeyingMaterial(32, TLS_EXPORTER_LABEL, Buffer.alloc(0));
  } catch {
    return null; // the connection went away meanwhile
  }
}
