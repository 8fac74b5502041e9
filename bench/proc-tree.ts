/**
 * A server's process tree as the kernel sees it. Memory: PSS (proportional set size) summed over
 * the tree, so a multi-process server (Postfix: master + one smtpd per session) is charged its
 * shared pages once, and a single Node process reads about the same as its RSS. CPU: user + system
 * time of the tree, including children that already exited and were reaped.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";

function children(): Map<number, number[]> {
  const byParent = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "latin1");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = byParent.get(ppid) ?? [];
      list.push(Number(name));
      byParent.set(ppid, list);
    } catch {
      // the process ended while we looked
    }
  }
  return byParent;
}

function pssKb(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "latin1"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Each root and all its descendants, once. */
function tree(roots: number[]): number[] {
  const byParent = children();
  const seen = new Set<number>();
  const stack = [...roots];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    stack.push(...(byParent.get(pid) ?? []));
  }
  return [...seen];
}

/** PSS in MB of each root and all its descendants. */
export function treePssMb(roots: number[]): number {
  return tree(roots).reduce((kb, pid) => kb + pssKb(pid), 0) / 1024;
}

/** Clock ticks per second of /proc/PID/stat times (USER_HZ: 100 on every Linux this runs on). */
const TICKS_PER_SEC = 100;

/** utime + stime + cutime + cstime (fields 14–17) of one process, in ms; 0 if it is gone. */
function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // f[0] is field 3 (state), so field n is f[n - 3].
    return ((Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 1000) / TICKS_PER_SEC;
  } catch {
    return 0;
  }
}

/** CPU time in ms used so far by each root and all its descendants. */
export function treeCpuMs(roots: number[]): number {
  return tree(roots).reduce((ms, pid) => ms + cpuMs(pid), 0);
}

/** Samples the tree every `everyMs` until stop(); returns the peak. */
export function peakSampler(roots: () => number[], everyMs = 25): { stop(): number } {
  let peak = treePssMb(roots());
  const timer = setInterval(() => (peak = Math.max(peak, treePssMb(roots()))), everyMs);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, treePssMb(roots()));
    },
  };
}

/**
 * Pins each root, its descendants and all their threads to `cpus` (a taskset list, "0" or "0,1").
 * Children forked later inherit the mask, so a process-per-session server stays pinned too.
 */
export function pinTree(roots: number[], cpus: string): void {
  for (const pid of tree(roots)) {
    try {
      execFileSync("taskset", ["-a", "-p", "-c", cpus, String(pid)], { stdio: "ignore" });
    } catch {
      // the process ended while we pinned it
    }
  }
}
