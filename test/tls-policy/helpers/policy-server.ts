/**
 * A local HTTPS server standing in for the mta-sts.DOMAIN hosts of many test domains (RFC 8461
 * §3.3): one port on 127.0.0.1, the certificate picked by SNI, the answer by Host. Counts the
 * requests per host so tests can prove what was fetched and what came from a cache.
 */
import { once } from "node:events";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { createSecureContext, type SecureContext } from "node:tls";
import type { IssuedCert } from "../../helpers/test-ca.js";

export interface PolicyResponse {
  status?: number;
  /** Default text/plain. */
  contentType?: string;
  body?: string;
  headers?: Record<string, string>;
  /** Never answer (a fetch that times out). */
  hang?: boolean;
}

export interface PolicyServer {
  port: number;
  /** What each host ("mta-sts.example.net") answers; a host not here gets 404. */
  routes: Map<string, PolicyResponse>;
  /** Host (without port) of every request, in order. */
  requests: string[];
  count(host: string): number;
  close(): Promise<void>;
}

/** `cert` by default; `bySni` gives other certificates for named hosts (wrong name, untrusted CA). */
export async function startPolicyServer(cert: IssuedCert, bySni: Record<string, IssuedCert> = {}): Promise<PolicyServer> {
  const contexts = new Map<string, SecureContext>(Object.entries(bySni).map(([name, c]) => [name, createSecureContext({ key: c.keyPem, cert: c.certPem })]));
  const routes = new Map<string, PolicyResponse>();
  const requests: string[] = [];
  const server: Server = createServer(
    {
      key: cert.keyPem,
      cert: cert.certPem,
      SNICallback: (name, cb) => cb(null, contexts.get(name.toLowerCase())),
    },
    (req, res) => {
      const host = (req.headers.host ?? "").replace(/:\d+$/, "").toLowerCase();
      requests.push(host);
      const r = req.url === "/.well-known/mta-sts.txt" ? routes.get(host) : undefined;
      if (r?.hang) return;
      if (!r) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
        return;
      }
      res.writeHead(r.status ?? 200, { "content-type": r.contentType ?? "text/plain", ...r.headers }).end(r.body ?? "");
    },
  );
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    routes,
    requests,
    count: (host) => requests.filter((h) => h === host).length,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A policy file as a domain would serve it. */
export function policyText(mode: "enforce" | "testing" | "none", mx: string[], maxAge = 86_400): string {
  return ["version: STSv1", `mode: ${mode}`, ...mx.map((m) => `mx: ${m}`), `max_age: ${maxAge}`, ""].join("\r\n");
}
