/** Medians, spreads and ratios of the runs; the Markdown table and the JSON written to bench/results/. */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Measurement } from "./scenarios.js";

export interface Summary {
  median: number;
  min: number;
  max: number;
  runs: number;
  errors: string[];
  detail: Record<string, number | string>;
}

export interface BenchReport {
  startedAt: string;
  machine: Record<string, string | number>;
  mode: "quick" | "full";
  contenders: { name: string; status: string; work?: string; passwordScheme?: string; notes?: string[] }[];
  /** row key → contender → summary */
  rows: Record<string, Record<string, Summary>>;
  units: Record<string, { unit: string; higherIsBetter: boolean }>;
  raw: Record<string, Record<string, Measurement[]>>;
}

export function median(values: number[]): number {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

export function summarize(ms: Measurement[]): Summary {
  const values = ms.map((m) => m.value).filter((x) => !Number.isNaN(x));
  return {
    median: median(values),
    min: values.length ? Math.min(...values) : NaN,
    max: values.length ? Math.max(...values) : NaN,
    runs: values.length,
    errors: [...new Set(ms.flatMap((m) => m.errors))],
    detail: ms[ms.length - 1]?.detail ?? {},
  };
}

const fmt = (n: number) => (Number.isNaN(n) ? "–" : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));

/** Postern's median over the other's, turned so that > 1 always means "Postern is better". */
function ratio(p: Summary | undefined, o: Summary | undefined, higherIsBetter: boolean): string {
  if (!p || !o || Number.isNaN(p.median) || Number.isNaN(o.median) || o.median === 0 || p.median === 0) return "–";
  const r = higherIsBetter ? p.median / o.median : o.median / p.median;
  return `${r.toFixed(2)}×`;
}

export function markdown(report: BenchReport): string {
  const names = report.contenders.map((c) => c.name);
  const out: string[] = [];
  out.push(`# Postern benchmark — ${report.startedAt} (${report.mode})`, "");
  out.push(
    Object.entries(report.machine)
      .map(([k, v]) => `- ${k}: ${v}`)
      .join("\n"),
    "",
  );
  out.push("| contender | status | work behind each 250 | passwords | notes |", "|---|---|---|---|---|");
  for (const c of report.contenders) out.push(`| ${c.name} | ${c.status} | ${c.work ?? ""} | ${c.passwordScheme ?? ""} | ${(c.notes ?? []).join("; ")} |`);
  out.push("");
  out.push(
    "Each cell: median (min–max) over the runs. Ratios are Postern's advantage from the same run: > 1× means Postern is better (faster, or less memory or CPU).",
    "A contender marked ‡ discards: its 250s are counted as answered (discard: not verified at the sink); every other contender's count only holds messages that arrived with the same body hash.",
    "",
  );
  const others = names.filter((n) => n !== "Postern");
  const discarding = new Set(report.contenders.filter((c) => c.work?.startsWith("discards:")).map((c) => c.name));
  const label = (n: string) => (discarding.has(n) ? `${n} ‡` : n);
  out.push(`| scenario | unit | ${names.map(label).join(" | ")} | ${others.map((n) => `Postern vs ${label(n)}`).join(" | ")} |`);
  out.push(`|---|---|${names.map(() => "---").join("|")}|${others.map(() => "---").join("|")}|`);
  for (const [key, byName] of Object.entries(report.rows)) {
    const u = report.units[key]!;
    const cells = names.map((n) => {
      const s = byName[n];
      if (!s) return "–";
      if (s.runs === 0) return s.detail.skipped ? "skipped" : "–";
      const spread = s.runs > 1 ? ` (${fmt(s.min)}–${fmt(s.max)})` : "";
      return `${fmt(s.median)}${spread}${s.errors.length ? " ⚠" : ""}`;
    });
    const p = byName["Postern"];
    out.push(
      `| ${key} | ${u.unit}${u.higherIsBetter ? " ↑" : " ↓"} | ${cells.join(" | ")} | ${others.map((n) => ratio(p, byName[n], u.higherIsBetter)).join(" | ")} |`,
    );
  }
  const notes: string[] = [];
  for (const [key, byName] of Object.entries(report.rows)) {
    for (const [name, s] of Object.entries(byName)) {
      if (s.detail.skipped) notes.push(`- ${key}, ${name}: skipped — ${s.detail.skipped}`);
      for (const e of s.errors) notes.push(`- ⚠ ${key}, ${name}: ${e}`);
    }
  }
  out.push(...dkimCost(report));
  if (notes.length) out.push("", "Skipped cells and errors:", "", ...notes);
  out.push("", "Details of the last run per cell are in the JSON file next to this one.", "");
  return out.join("\n");
}

/** The CPU that DKIM signing adds per message, when "Postern (DKIM)" ran beside "Postern" (`--dkim`). */
export const DKIM_CPU_ROW = "1 server CPU per message (relay included)";

export function dkimCost(report: BenchReport): string[] {
  return [...signingCost(report), ...baselineCost(report)];
}

/** `--baseline DIR`: this build's CPU per message against the other build's, paired by round. */
function baselineCost(report: BenchReport): string[] {
  const now = report.raw[DKIM_CPU_ROW]?.["Postern"];
  const before = report.raw[DKIM_CPU_ROW]?.["Postern (baseline)"];
  if (!now || !before) return [];
  const deltas = now.map((p, i) => p.value - (before[i]?.value ?? NaN)).filter((d) => !Number.isNaN(d));
  const a = median(before.map((m) => m.value));
  const b = median(now.map((m) => m.value));
  return [
    "",
    `This build against the baseline (scenario 1, server CPU per message): ${fmt(a)} ms → ${fmt(b)} ms (medians); ` +
      `per-round difference ${fmt(median(deltas))} ms (${deltas.map(fmt).join(", ")})`,
  ];
}

function signingCost(report: BenchReport): string[] {
  const plain = report.raw[DKIM_CPU_ROW]?.["Postern"];
  const signed = report.raw[DKIM_CPU_ROW]?.["Postern (DKIM)"];
  if (!plain || !signed) return [];
  // Pair the two by round: they ran back to back, under the same machine noise.
  const deltas = plain.map((p, i) => (signed[i]?.value ?? NaN) - p.value).filter((d) => !Number.isNaN(d));
  const p = median(plain.map((m) => m.value));
  const s = median(signed.map((m) => m.value));
  return [
    "",
    "DKIM signing cost (scenario 1, 4 KB messages, Ed25519 + RSA-2048 dual signing):",
    "",
    `- server CPU per message: ${fmt(p)} ms unsigned, ${fmt(s)} ms signed (medians): ${(s / p).toFixed(2)}× ` +
      `— signing adds ${fmt(median(deltas))} ms per message (median of the per-round differences: ${deltas.map(fmt).join(", ")})`,
  ];
}

export function writeReport(dir: string, report: BenchReport): { md: string; json: string } {
  mkdirSync(dir, { recursive: true });
  const stamp = report.startedAt.replace(/[:.]/g, "-");
  const md = join(dir, `${stamp}-${report.mode}.md`);
  const json = join(dir, `${stamp}-${report.mode}.json`);
  writeFileSync(md, markdown(report));
  writeFileSync(json, JSON.stringify(report, null, 2) + "\n");
  writeFileSync(join(dir, "latest.md"), markdown(report));
  return { md, json };
}
