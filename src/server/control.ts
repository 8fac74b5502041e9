/**
 * The admin control socket: a unix socket in the data directory (mode 0600, inside the 0700
 * dataDir), one JSON object per line each way. `postern queue …` talks to the running server
 * through it, so queue changes go through the runner's locks instead of racing it on disk.
 *
 *   → {"op":"hold","id":"0123456789abcdefghjk"}
 *   ← {"ok":true,"result":{}}         or   {"ok":false,"error":"no such message in the queue: …"}
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { chmod, unlink } from "node:fs/promises";
import { join } from "node:path";
import { isQueueId } from "../queue/queue-id.js";
import type { QueueAdmin } from "../queue/admin.js";
import type { Logger } from "./log.js";

export const CONTROL_SOCKET_NAME = "control.sock";
/** Requests are small; anything longer is not ours. */
const MAX_REQUEST = 4096;

export type ControlOp = "list" | "show" | "flush" | "hold" | "release" | "delete" | "delete-deferred";

export interface ControlRequest {
  op: ControlOp;
  id?: string;
}

export type ControlResponse = { ok: true; result: unknown } | { ok: false; error: string };

export function controlSocketPath(dataDir: string): string {
  return join(dataDir, CONTROL_SOCKET_NAME);
}

async function answer(admin: QueueAdmin, req: ControlRequest): Promise<unknown> {
  const needId = (): string => {
    // The id reaches file paths: only well-formed queue ids pass.
    if (typeof req.id !== "string" || !isQueueId(req.id)) throw new Error(`invalid queue id: ${JSON.stringify(req.id)}`);
    return req.id;
  };
  switch (req.op) {
    case "list":
      return admin.list();
    case "show":
      return admin.show(needId());
    case "flush":
      return admin.flush(req.id === undefined ? undefined : needId());
    case "hold":
      return admin.hold(needId()).then(() => ({}));
    case "release":
      return admin.release(needId()).then(() => ({}));
    case "delete":
      return admin.delete(needId()).then(() => ({}));
    case "delete-deferred":
      return admin.deleteDeferred();
    default:
      throw new Error(`unknown operation: ${JSON.stringify((req as { op?: unknown }).op)}`);
  }
}

function serve(socket: Socket, admin: QueueAdmin, log: Logger): void {
  let buffer = "";
  let chain = Promise.resolve();
  socket.setEncoding("utf8");
  socket.on("error", () => socket.destroy());
  socket.on("data", (chunk: string) => {
    buffer += chunk;
    if (buffer.length > MAX_REQUEST && !buffer.includes("\n")) return void socket.destroy();
    let nl: number;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      // One request at a time per connection, answered in order.
      chain = chain.then(async () => {
        let response: ControlResponse;
        try {
          const req = JSON.parse(line) as ControlRequest;
          log.info({ event: "control-request", op: req.op, id: req.id }, "control: request");
          response = { ok: true, result: await answer(admin, req) };
        } catch (err) {
          response = { ok: false, error: err instanceof Error ? err.message : String(err) };
        }
        if (!socket.destroyed) socket.write(JSON.stringify(response) + "\n");
      });
    }
  });
}

/** True when something answers on the socket path (a live server). */
function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path);
    probe.once("connect", () => (probe.destroy(), resolve(true)));
    probe.once("error", () => resolve(false));
  });
}

export interface ControlServer {
  path: string;
  close(): Promise<void>;
}

export async function startControlServer(dataDir: string, admin: QueueAdmin, log: Logger): Promise<ControlServer> {
  const path = controlSocketPath(dataDir);
  if (await isLive(path)) throw new Error(`another postern is serving ${dataDir} (${path} answers)`);
  await unlink(path).catch(() => undefined); // left behind by a crash
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    serve(socket, admin, log);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  log.info({ event: "control-listening", path }, "control socket listening");
  return {
    path,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
