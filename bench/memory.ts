/**
 * Server memory as the kernel sees it: PSS (proportional set size) summed over a process tree, so a
 * multi-process server (Postfix: master + one smtpd per session) is charged its shared pages once,
 * and a single Node process reads about the same as its RSS.
 */
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

/** PSS in MB of each root and all its descendants. */
export function treePssMb(roots: number[]): number {
  const byParent = children();
  let kb = 0;
  const seen = new Set<number>();
  const stack = [...roots];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    kb += pssKb(pid);
    stack.push(...(byParent.get(pid) ?? []));
  }
  return kb / 1024;
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
