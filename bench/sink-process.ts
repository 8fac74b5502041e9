/** Starts bench/sink.ts in its own process (so it never shares a core's event loop with the load). */
import { fork, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import type { SinkOptions, SinkStats } from "./sink.js";

export interface SinkProcess {
  port: number;
  implicitPort?: number;
  pid: number;
  stats(): Promise<SinkStats>;
  reset(): Promise<void>;
  /** Resolves once `count` messages arrived, or with what arrived by the deadline. */
  waitFor(count: number, deadlineMs: number): Promise<SinkStats>;
  stop(): Promise<void>;
}

function request<T>(child: ChildProcess, cmd: string, key: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (m: Record<string, unknown>) => {
      if (key in m) {
        child.off("message", on);
        resolve(m[key] as T);
      }
    };
    child.on("message", on);
    child.send({ cmd });
  });
}

export async function startSinkProcess(opts: SinkOptions): Promise<SinkProcess> {
  const child = fork(join(import.meta.dirname, "sink.js"), [JSON.stringify(opts)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const ready = await new Promise<{ port: number; implicitPort?: number; pid: number }>((resolve, reject) => {
    child.once("message", (m) => resolve(m as { port: number; implicitPort?: number; pid: number }));
    child.once("exit", (code) => reject(new Error(`sink exited (${code})`)));
  });
  const stats = () => request<SinkStats>(child, "stats", "stats");
  return {
    ...ready,
    stats,
    reset: async () => void (await request(child, "reset", "reset")),
    async waitFor(count, deadlineMs) {
      const until = Date.now() + deadlineMs;
      for (;;) {
        const s = await stats();
        if (s.count >= count || Date.now() >= until) return s;
        // Polled: arrivals come from another process; 20 ms is far below any measured interval.
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}
