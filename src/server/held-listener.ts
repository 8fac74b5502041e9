/**
 * A TCP listener bound early (as root, before the privilege drop: a port below 1024 needs it) that
 * serves nothing until `accept` is set: connections the kernel accepts before then are held, not
 * read, and handed over in order when serving starts. The SMTP listeners and the web listener.
 */
import { createServer, type Server, type Socket } from "node:net";

export interface HeldListener {
  server: Server;
  held: Socket[];
  /** Set when serving starts; until then connections wait in `held`. */
  accept?: (socket: Socket) => void;
}

/**
 * Binds `address:port`; rejects with the listen error (EADDRINUSE, EACCES …) as Node gives it.
 * Later errors (a failed accept: EMFILE) go to `onError`, never unhandled (that would end the process).
 */
export async function bindHeld(
  address: string,
  port: number,
  opts: { noDelay?: boolean; pauseOnConnect?: boolean; onError?: (err: Error) => void } = {},
): Promise<HeldListener> {
  const b: HeldListener = { server: undefined!, held: [] };
  b.server = createServer({ noDelay: opts.noDelay ?? false, pauseOnConnect: opts.pauseOnConnect ?? false }, (s) => {
    if (b.accept) return b.accept(s);
    // Accepted by the kernel while we were still root or still starting: not read, not answered.
    s.on("error", () => undefined);
    b.held.push(s);
  });
  await new Promise<void>((resolve, reject) => {
    b.server.once("error", reject);
    b.server.listen(port, address, () => {
      b.server.off("error", reject);
      b.server.on("error", opts.onError ?? (() => undefined));
      resolve();
    });
  });
  return b;
}

/** Starts serving: `accept` takes the held connections (those still open) and every later one. */
export function serveHeld(b: HeldListener, accept: (socket: Socket) => void): void {
  b.accept = accept;
  for (const s of b.held.splice(0)) if (!s.destroyed) accept(s);
}

/** Closes the listener and drops the connections still held. */
export function closeHeld(b: HeldListener): void {
  b.server.close();
  for (const s of b.held.splice(0)) s.destroy();
}
