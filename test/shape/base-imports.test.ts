/**
 * src/base is the shared vocabulary (issue 13 item 2): it imports nothing from the rest of src/,
 * so every layer may import it without making a cycle.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { SRC, importsOf } from "./import-graph.js";

const BASE = join(SRC, "base");

test("src/base imports only src/base", () => {
  const files = readdirSync(BASE)
    .filter((f) => f.endsWith(".ts"))
    .map((f) => join(BASE, f));
  assert.ok(files.length > 0);
  const outside = files.flatMap((f) =>
    importsOf(f)
      .filter((i) => dirname(i) !== BASE)
      .map((i) => `${relative(BASE, f)} → ${relative(BASE, i)}`),
  );
  assert.deepEqual(outside, []);
});
