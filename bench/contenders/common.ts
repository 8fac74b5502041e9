/** Small helpers shared by the contenders: ports, commands, waiting for a listener, Maildir counts. */
import { execFile, spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { createServer, connect, type AddressInfo } from "node:net";
import { type Dirent, readdirSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";

export const run = promisify(execFile);

/** A free loopback port for servers that cannot listen on port 0 themselves (Postfix, Haraka). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export async function commandExists(cmd: string): Promise<boolean> {
  return run("sh", ["-c", `command -v ${cmd}`]).then(
    () => true,
    () => false,
  );
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port: number, deadlineMs = 20_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: "127.0.0.1", port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on 127.0.0.1:${port} after ${deadlineMs} ms`);
    // A server we started in another process gives no event to await; poll briefly.
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Files in every `new/` below a Maildir root (delivered messages). */
export function countMaildirNew(root: string): number {
  let n = 0;
  const walk = (dir: string) => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      if (e.name === "new") n += readdirSync(join(dir, e.name)).length;
      else if (e.name !== "tmp" && e.name !== "cur") walk(join(dir, e.name));
    }
  };
  walk(root);
  return n;
}

/**
 * Runs a command that starts a daemon (postfix start, dovecot). Its output goes to `logFile`, not
 * to a pipe: the daemon inherits the descriptors, and a pipe would never close. Resolves on exit.
 */
export async function startDaemon(cmd: string, args: string[], logFile: string): Promise<void> {
  const fd = openSync(logFile, "a");
  const child = spawn(cmd, args, { stdio: ["ignore", fd, fd] });
  closeSync(fd);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", resolve);
  });
  if (code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${code}: ${readFileSync(logFile, "utf8").trim().split("\n").slice(-3).join(" | ")}`);
}
