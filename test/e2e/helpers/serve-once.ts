/**
 * Runs `postern serve` expecting it to stop by itself (a refused start): resolves with its exit
 * code and output. A server that starts instead of failing is killed after `timeoutMs`, and the
 * result says so (`timedOut`), so a test fails with the output instead of hanging.
 */
import { spawn } from "node:child_process";
import { BIN, ROOT } from "./postern.js";

export interface ServeResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export function serveOnce(args: string[], opts: { cwd?: string; timeoutMs?: number; wrapper?: string[] } = {}): Promise<ServeResult> {
  const command = [...(opts.wrapper ?? []), process.execPath, BIN, "serve", ...args];
  return new Promise((resolve) => {
    const child = spawn(command[0]!, command.slice(1), { cwd: opts.cwd ?? ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, opts.timeoutMs ?? 20_000);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}
