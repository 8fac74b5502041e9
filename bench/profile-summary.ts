/**
 * `node dist/bench/profile-summary.js FILE.cpuprofile [--top N]`: the functions with the most self
 * time in a V8 CPU profile (as `node --cpu-prof` writes it, e.g. `npm run bench -- --profile`),
 * each with its share of the busy time (idle excluded) and of the whole profile, then the same
 * grouped by source file. Prints Markdown tables.
 */
import { readFileSync } from "node:fs";
import { relative, resolve } from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const ROOT = resolve(import.meta.dirname, "../..");

/** A short place for a frame: project files relative to the checkout, node_modules by package. */
function place(url: string): string {
  if (!url) return "";
  const path = url.replace(/^file:\/\//, "");
  const nm = path.lastIndexOf("node_modules/");
  if (nm >= 0) return path.slice(nm + "node_modules/".length);
  return path.startsWith("/") ? relative(ROOT, path) : path;
}

export function summarize(profile: CpuProfile): { totalMs: number; busyMs: number; byFunction: Map<string, number>; byFile: Map<string, number> } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [i, id] of profile.samples.entries()) {
    // timeDeltas[i] is the time before sample i; the sample stands for the interval that ends it.
    const us = profile.timeDeltas[i + 1] ?? 0;
    const frame = byId.get(id)?.callFrame;
    if (!frame) continue;
    totalUs += us;
    if (frame.functionName === "(idle)") {
      idleUs += us;
      continue;
    }
    const where = place(frame.url);
    const fn = `${frame.functionName || "(anonymous)"}${where ? ` ${where}:${frame.lineNumber + 1}` : ""}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
    const file = where || frame.functionName;
    byFile.set(file, (byFile.get(file) ?? 0) + us);
  }
  return { totalMs: totalUs / 1000, busyMs: (totalUs - idleUs) / 1000, byFunction, byFile };
}

function table(title: string, rows: Map<string, number>, busyMs: number, totalMs: number, top: number): string[] {
  const out = [`| ${title} | self ms | % of busy | % of profile |`, "|---|---|---|---|"];
  for (const [name, us] of [...rows].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    const ms = us / 1000;
    out.push(`| \`${name}\` | ${ms.toFixed(0)} | ${((100 * ms) / busyMs).toFixed(1)} | ${((100 * ms) / totalMs).toFixed(1)} |`);
  }
  return out;
}

function main(): void {
  const args = process.argv.slice(2);
  const file = args.find((a) => !a.startsWith("--"));
  if (!file) {
    process.stderr.write("usage: node dist/bench/profile-summary.js FILE.cpuprofile [--top N]\n");
    process.exit(2);
  }
  const topAt = args.indexOf("--top");
  const top = topAt >= 0 ? Number(args[topAt + 1]) : 25;
  const s = summarize(JSON.parse(readFileSync(file, "utf8")) as CpuProfile);
  const lines = [
    `${file}: ${s.totalMs.toFixed(0)} ms profiled, ${s.busyMs.toFixed(0)} ms busy (${((100 * s.busyMs) / s.totalMs).toFixed(1)} %), idle excluded below`,
    "",
    ...table("function (self time)", s.byFunction, s.busyMs, s.totalMs, top),
    "",
    ...table("file (self time)", s.byFile, s.busyMs, s.totalMs, Math.min(top, 15)),
    "",
  ];
  process.stdout.write(lines.join("\n"));
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) main();
