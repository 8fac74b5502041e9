/**
 * The data directory lock itself (src/queue/data-lock.ts): one holder at a time, given back by
 * the kernel when the holder dies however it dies, and no file outside the directory touched.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { link, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { DATA_LOCK_NAME, DataDirBusyError, lockDataDir } from "../../src/queue/data-lock.js";

describe("lockDataDir (issue 12)", () => {
  let base: string;
  before(async () => {
    base = await mkdtemp(join(tmpdir(), "postern-lock-"));
  });
  after(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it("one holder at a time, even in one process; the refusal names the holder; release gives it back", async () => {
    const dir = join(base, "one");
    const first = lockDataDir(dir);
    assert.equal(await readFile(join(dir, DATA_LOCK_NAME), "utf8"), `${process.pid}\n`);
    assert.throws(
      () => lockDataDir(dir),
      (err: unknown) =>
        err instanceof DataDirBusyError &&
        err.holderPid === process.pid &&
        err.message.includes(`(pid ${process.pid}) is already serving the data directory ${dir}`),
    );
    first.release();
    first.release(); // twice is harmless
    const again = lockDataDir(dir);
    again.release();
  });

  it("a holder killed with SIGKILL leaves no stale lock: the kernel releases it", async () => {
    const dir = join(base, "killed");
    const moduleUrl = pathToFileURL(join(import.meta.dirname, "../../src/queue/data-lock.js")).href;
    const child = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `const { lockDataDir } = await import(${JSON.stringify(moduleUrl)}); lockDataDir(${JSON.stringify(dir)}); console.log("locked"); setInterval(() => {}, 1000);`,
      ],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    await new Promise<void>((ok, fail) => {
      child.stdout.on("data", (d: Buffer) => d.toString().includes("locked") && ok());
      child.once("exit", (code) => fail(new Error(`the holder exited early (${code})`)));
    });
    assert.throws(
      () => lockDataDir(dir),
      (err: unknown) => err instanceof DataDirBusyError && err.holderPid === child.pid,
    );
    const gone = new Promise((ok) => child.once("exit", ok));
    child.kill("SIGKILL");
    await gone;
    // The dead holder's PID is still written in the file: it does not matter, only the flock does.
    lockDataDir(dir).release();
  });

  it("a link planted as the lock file is refused, and its target is left as it was", async () => {
    const outside = join(base, "outside-file");
    await writeFile(outside, "not ours\n");
    const viaSymlink = join(base, "sym");
    await lockDataDir(viaSymlink).release();
    await rm(join(viaSymlink, DATA_LOCK_NAME));
    await symlink(outside, join(viaSymlink, DATA_LOCK_NAME));
    assert.throws(() => lockDataDir(viaSymlink), /ELOOP/);
    const viaHardLink = join(base, "hard");
    await lockDataDir(viaHardLink).release();
    await rm(join(viaHardLink, DATA_LOCK_NAME));
    await link(outside, join(viaHardLink, DATA_LOCK_NAME));
    assert.throws(() => lockDataDir(viaHardLink), /not a plain file/);
    assert.equal(await readFile(outside, "utf8"), "not ours\n");
  });
});
