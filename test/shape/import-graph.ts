/** The import graph of src/ as the shape tests read it: relative imports resolved to .ts files. */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const SRC = join(ROOT, "src");

export function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** Relative imports (static, re-exports and dynamic), resolved to .ts files under src/. */
export function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const found = new Set<string>();
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s*["'](\.[^"']+)["']|import\(\s*["'](\.[^"']+)["']\s*\)/g)) {
    const spec = (m[1] ?? m[2])!;
    found.add(resolve(dirname(file), spec.replace(/\.js$/, ".ts")));
  }
  return [...found];
}

/** Every elementary cycle's smallest rotation, found by DFS from each node (small graph: fine). */
export function cyclesIn(graph: Map<string, string[]>): string[][] {
  const cycles = new Map<string, string[]>();
  const index = new Map([...graph.keys()].sort().map((k, i) => [k, i]));
  for (const start of graph.keys()) {
    const path: string[] = [start];
    const walk = (node: string) => {
      for (const next of graph.get(node) ?? []) {
        if (next === start) {
          const key = path.join(" → ");
          cycles.set(key, [...path]);
        } else if (!path.includes(next) && index.get(next)! > index.get(start)!) {
          path.push(next);
          walk(next);
          path.pop();
        }
      }
    };
    walk(start);
  }
  return [...cycles.values()];
}
