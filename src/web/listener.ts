/**
 * The HTTPS listener of the web face (`web:` in the config): the server's certificate, TLS 1.2+
 * with the submission ports' profile (src/server/tls.ts), and every request passed to the apps in
 * order (src/web/types.ts) until one answers; none: 404. Every response carries the security
 * headers below; a request body is bounded, a request has a deadline, and nothing a client sends
 * can take the process down (an app that throws gets a 500, logged).
 */
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { SecureContext } from "node:tls";
import { closeHeld, serveHeld, type HeldListener } from "../server/held-listener.js";
import type { Logger } from "../server/log.js";
import { serverContextOptions } from "../server/tls.js";
import type { WebApp, WebRequest } from "./types.js";

export interface WebServerOptions {
  address: string;
  port: number;
  /** Already bound (before the privilege drop, src/server/held-listener.ts): served, not listened on again. */
  bound?: HeldListener;
  tls: {
    cert: Buffer;
    key: Buffer;
    minVersion?: "TLSv1.2" | "TLSv1.3";
    /** The current context (a SIGHUP reload swaps the certificate); default: one built from cert/key. */
    context?: () => SecureContext;
  };
  /** Largest request body an app may read (readRequestBody), and a declared Content-Length past it is 413 at once. */
  maxBodyBytes?: number;
  /** Whole request, headers to last byte of the answer. */
  requestTimeoutMs?: number;
}

export interface WebServer {
  port: number;
  close(): Promise<void>;
}

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** Set before the apps run; an app that sets its own Content-Security-Policy replaces the default. */
export const SECURITY_HEADERS: Record<string, string> = {
  "strict-transport-security": "max-age=31536000",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
};

export class BodyTooLargeError extends Error {
  constructor(limit: number) {
    super(`request body over ${limit} bytes`);
  }
}

/** The limit readRequestBody applies to each request (set by the listener). */
const bodyLimits = new WeakMap<IncomingMessage, number>();

/**
 * Reads a request's body, at most the listener's limit (BodyTooLargeError past it: answer 413).
 * The one way apps read a body, so the limit holds whatever the app.
 */
export async function readRequestBody(req: IncomingMessage, limit = bodyLimits.get(req) ?? DEFAULT_MAX_BODY_BYTES): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      req.resume();
      throw new BodyTooLargeError(limit);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Plain-text answer for the fixed bodies the listener and apps send (never request text). */
export function sendText(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", ...headers }).end(`${body}\n`);
}

export async function startWebServer(opts: WebServerOptions, apps: WebApp[], log: Logger): Promise<WebServer> {
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const timeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const base = serverContextOptions({ cert: opts.tls.cert, key: opts.tls.key, minVersion: opts.tls.minVersion ?? "TLSv1.2" }, "intermediate");
  const current = opts.tls.context;
  const server: Server = createServer({
    ...base,
    // A reload's certificate reaches new connections: the context is asked for each handshake.
    ...(current ? { SNICallback: (_name: string, cb: (err: Error | null, ctx?: SecureContext) => void) => cb(null, current()) } : {}),
    requestTimeout: timeoutMs,
    headersTimeout: Math.min(timeoutMs, 10_000),
    keepAliveTimeout: 5_000,
    maxHeaderSize: 16 * 1024,
  });
  server.on("request", (req: IncomingMessage, res: ServerResponse) => void handle(req, res));
  // A malformed request line or header: a fixed 400, never a crash (Node's default, logged here).
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    log.debug({ event: "web-client-error", code: err.code }, "malformed HTTP request");
    if (err.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    const status =
      err.code === "HPE_HEADER_OVERFLOW"
        ? "431 Request Header Fields Too Large"
        : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? "408 Request Timeout"
          : "400 Bad Request";
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  });
  server.on("tlsClientError", (err: NodeJS.ErrnoException) => log.debug({ event: "web-tls-error", code: err.code }, "TLS handshake failed"));

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    let path = "/";
    // The deadline of the whole request: an app that hangs (or a client that trickles) gets cut.
    const timer = setTimeout(() => {
      if (res.headersSent) {
        req.socket.destroy();
        return;
      }
      res.once("finish", () => req.socket.destroy());
      sendText(res, 503, "request timed out", { connection: "close" });
    }, timeoutMs);
    timer.unref();
    res.on("close", () => {
      clearTimeout(timer);
      log.info(
        { event: "web-request", method: req.method, path, status: res.statusCode, ms: Math.round(performance.now() - started) },
        `${req.method} ${path} ${res.statusCode}`,
      );
    });
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    req.on("error", () => undefined);
    res.on("error", () => undefined);
    let url: URL;
    try {
      // A fixed origin: the Host header is the client's word and is never part of the URL we parse.
      url = new URL(req.url ?? "/", "https://web.invalid");
      if (!(req.url ?? "").startsWith("/")) throw new Error("not origin-form");
    } catch {
      sendText(res, 400, "bad request");
      return;
    }
    path = url.pathname;
    const declared = Number(req.headers["content-length"] ?? 0);
    if (!Number.isFinite(declared) || declared > maxBody) {
      sendText(res, 413, "request body too large", { connection: "close" });
      req.resume();
      return;
    }
    bodyLimits.set(req, maxBody);
    const request: WebRequest = { req, res, url, remoteIp: req.socket.remoteAddress ?? "" };
    for (const app of apps) {
      try {
        if (await app.handle(request)) return;
      } catch (err) {
        if (err instanceof BodyTooLargeError) {
          sendText(res, 413, "request body too large", { connection: "close" });
          return;
        }
        log.error({ event: "web-app-error", app: app.name, path, err: err instanceof Error ? err.message : String(err) }, "web app failed");
        sendText(res, 500, "internal error");
        return;
      }
      if (res.headersSent || res.writableEnded) return;
    }
    sendText(res, 404, "not found");
  }

  const bound = opts.bound;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    const listening = () => {
      server.off("error", reject);
      // A failed accept (EMFILE) later: logged, never an unhandled 'error' that ends the process.
      server.on("error", (err) => log.warn({ event: "web-listener-error", err: err.message }, "web listener error"));
      resolve();
    };
    // A port bound earlier: this server takes over its socket (listen(handle)), no second bind.
    if (bound) server.listen(bound.server, listening);
    else server.listen(opts.port, opts.address, listening);
  });
  // What arrived while starting is handed over as Node documents: emit "connection".
  if (bound) serveHeld(bound, (socket) => server.emit("connection", socket));
  const port = (server.address() as AddressInfo).port;
  log.info({ event: "web-listening", address: opts.address, port, apps: apps.map((a) => a.name) }, `listening (web: ${apps.map((a) => a.name).join(", ")})`);
  return {
    port,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      if (bound) closeHeld(bound);
      for (const app of apps) await app.close?.().catch(() => undefined);
    },
  };
}
