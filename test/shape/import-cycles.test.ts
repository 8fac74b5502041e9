/**
 * src/ has no import cycles (issue 13): a cycle means two modules cannot be understood, tested or
 * replaced apart, and with ESM it can also leave a binding undefined at start-up. Type-only imports
 * count too: they tie the two files' vocabularies together just the same.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { relative } from "node:path";
import { SRC, cyclesIn, importsOf, sources } from "./import-graph.js";

test("src/ has no import cycles", () => {
  const files = sources(SRC);
  const graph = new Map(files.map((f) => [f, importsOf(f).filter((i) => files.includes(i))]));
  const cycles = cyclesIn(graph).map((c) => [...c, c[0]!].map((f) => relative(SRC, f)).join(" → "));
  assert.deepEqual(cycles, [], `import cycles:\n${cycles.join("\n")}`);
});

test("the cycle finder finds a cycle of three and ignores a diamond", () => {
  const g = new Map([
    ["a", ["b"]],
    ["b", ["c"]],
    ["c", ["a"]],
    ["d", ["e", "f"]],
    ["e", ["g"]],
    ["f", ["g"]],
    ["g", []],
  ]);
  assert.deepEqual(cyclesIn(g), [["a", "b", "c"]]);
});
