import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Parses `strace -f` output into completed system calls, in the order they returned. */
export function completedCalls(trace: string): string[] {
  const pending = new Map<string, string>();
  const done: string[] = [];
  for (const line of trace.split("\n")) {
    const m = /^(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const pid = m[1]!;
    const body = m[2]!;
    if (body.endsWith("<unfinished ...>")) {
      pending.set(pid, body.slice(0, -"<unfinished ...>".length));
    } else if (body.startsWith("<...")) {
      // "<... fsync resumed>) = 0" completes the call the same thread started earlier.
      done.push((pending.get(pid) ?? "") + body.replace(/^<\.\.\. \w+ resumed>/, ""));
      pending.delete(pid);
    } else if (!body.startsWith("+++") && !body.startsWith("---")) {
      done.push(body);
    }
  }
  return done;
}

/**
 * Runs an ES module `script` under `strace -f -y -e trace=<calls>` (plus the access calls a
 * script uses as markers, e.g. `accessSync("/marker-" + id)`), and returns what it printed and
 * the completed calls in order, with `at(pred, what)`: the first call matching, or a failed assertion.
 */
export async function traceScript(
  script: string,
  calls: string,
): Promise<{ stdout: string; calls: string[]; at(pred: (c: string) => boolean, what: string): number }> {
  const dir = await mkdtemp(join(tmpdir(), "postern-strace-"));
  try {
    const traceFile = join(dir, "trace");
    const { stdout } = await run("strace", [
      "-f",
      "-y",
      "-o",
      traceFile,
      "-e",
      `trace=${calls},access,faccessat,faccessat2`,
      process.execPath,
      "--input-type=module",
      "-e",
      script,
    ]);
    const completed = completedCalls(await readFile(traceFile, "utf8"));
    const at = (pred: (c: string) => boolean, what: string) => {
      const i = completed.findIndex(pred);
      assert.ok(i >= 0, `${what} not found in:\n${completed.join("\n")}`);
      return i;
    };
    return { stdout, calls: completed, at };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
