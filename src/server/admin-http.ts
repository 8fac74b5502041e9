/**
 * The admin HTTP listener: GET /metrics (Prometheus text format) and GET /healthz. Loopback by
 * default and off unless `admin.port` is configured; it answers nothing else.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Metrics } from "./metrics.js";
import type { Logger } from "./log.js";

export interface AdminServer {
  port: number;
  close(): Promise<void>;
}

export async function startAdminServer(
  opts: { address: string; port: number },
  metrics: Metrics,
  health: () => { ok: boolean; detail: Record<string, unknown> },
  log: Logger,
): Promise<AdminServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/metrics") {
      metrics.exposition().then(
        (body) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(body),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
      return;
    }
    if (path === "/healthz") {
      const h = health();
      res.writeHead(h.ok ? 200 : 503, { "content-type": "application/json" }).end(JSON.stringify({ status: h.ok ? "ok" : "failing", ...h.detail }) + "\n");
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.address, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ event: "admin-listening", address: opts.address, port }, "listening (admin: /metrics, /healthz)");
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
