import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { traceScript } from "../helpers/strace.js";
import { deliverToMaildir, maildirPathFor } from "../../src/delivery/maildir.js";
import { fileMessage } from "../../src/queue/message-file.js";

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), "postern-maildir-"));
}

test("delivery lands in new/ with the prefix and the exact bytes; tmp/ is left empty", async () => {
  const dir = await tempDir();
  const source = join(dir, "spooled");
  const body = Buffer.concat([Buffer.from("Subject: caf\xc3\xa9\r\n\r\n.line\r\n"), randomBytes(3 * 1024 * 1024)]);
  await writeFile(source, body);
  const maildir = join(dir, "example.org", "john", "Maildir");
  const prefix = Buffer.from("Return-Path: <a@b.example>\r\nDelivered-To: john@example.org\r\n");
  const name = await deliverToMaildir(maildir, fileMessage(source), { prefix, fsync: true });

  assert.match(name, /^\d+\.M\d+P\d+Q\d+R[0-9a-f]{8}\.[^/:]+$/);
  assert.deepEqual(await readdir(join(maildir, "new")), [name]);
  assert.deepEqual(await readdir(join(maildir, "tmp")), []);
  assert.deepEqual(await readdir(join(maildir, "cur")), []);
  assert.deepEqual(await readFile(join(maildir, "new", name)), Buffer.concat([prefix, body]));
  for (const sub of ["tmp", "new", "cur"]) assert.equal((await stat(join(maildir, sub))).mode & 0o777, 0o700);
  assert.equal((await stat(join(maildir, "new", name))).mode & 0o777, 0o600);
});

test("every delivery gets its own name", async () => {
  const dir = await tempDir();
  const source = join(dir, "m");
  await writeFile(source, "x\r\n");
  const names = await Promise.all(Array.from({ length: 20 }, () => deliverToMaildir(join(dir, "md"), fileMessage(source), { fsync: false })));
  assert.equal(new Set(names).size, 20);
  assert.equal((await readdir(join(dir, "md", "new"))).length, 20);
});

test("a missing source leaves nothing behind in tmp/ or new/ (streamed, or read whole when small)", async () => {
  const dir = await tempDir();
  for (const size of [undefined, 26]) {
    await assert.rejects(deliverToMaildir(join(dir, "md"), fileMessage(join(dir, "nope"), size), { fsync: true }), { code: "ENOENT" });
    assert.deepEqual(await readdir(join(dir, "md", "tmp")), []);
    assert.deepEqual(await readdir(join(dir, "md", "new")), []);
  }
});

test("maildirPathFor substitutes lower-cased safe segments", () => {
  assert.equal(
    maildirPathFor("/var/mail/{domain}/{localpart}/Maildir", { localPart: "John.Doe", domain: "Example.ORG." }),
    "/var/mail/example.org/john.doe/Maildir",
  );
});

test("maildirPathFor refuses anything that is not one safe path segment (SECURITY rule 6)", () => {
  const template = "/var/mail/{domain}/{localpart}/Maildir";
  const bad: [string, string][] = [
    ["../../etc", "example.org"],
    ["a/b", "example.org"],
    ["..", "example.org"],
    [".", "example.org"],
    [".hidden", "example.org"],
    ["", "example.org"],
    ["nul\0byte", "example.org"],
    ["line\nbreak", "example.org"],
    ["back\\slash", "example.org"],
    ["john", ".."],
    ["john", "a/b"],
    ["john", ""],
  ];
  for (const [localPart, domain] of bad) {
    assert.throws(() => maildirPathFor(template, { localPart, domain }), /unsafe/, JSON.stringify([localPart, domain]));
  }
  assert.throws(() => maildirPathFor("/var/mail/{user}", { localPart: "a", domain: "b" }), /unknown placeholder/);
});

test("rule 18 under strace: data fdatasync'd, renamed into new/, new/ fsync'd, only then delivered", async () => {
  const dir = await tempDir();
  const source = join(dir, "spooled");
  await writeFile(source, "Subject: traced\r\n\r\nhello\r\n");
  const maildirUrl = pathToFileURL(join(import.meta.dirname, "../../src/delivery/maildir.js")).href;
  const messageFileUrl = pathToFileURL(join(import.meta.dirname, "../../src/queue/message-file.js")).href;
  const script = `
    import { deliverToMaildir } from ${JSON.stringify(maildirUrl)};
    import { fileMessage } from ${JSON.stringify(messageFileUrl)};
    import { accessSync } from "node:fs";
    const name = await deliverToMaildir(${JSON.stringify(join(dir, "md"))}, fileMessage(${JSON.stringify(source)}, 26), { fsync: true });
    try { accessSync("/postern-delivered-marker-" + name); } catch {}
    process.stdout.write(name);
  `;
  const { stdout, calls, at } = await traceScript(script, "fsync,fdatasync,rename,renameat,renameat2");
  const name = stdout.trim();
  const dataSync = at((c) => c.startsWith("fdatasync(") && c.includes(`/md/tmp/${name}>`), "fdatasync of tmp/<name>");
  const moved = at((c) => c.startsWith("rename") && c.includes(`/md/new/${name}"`), "rename into new/");
  const dirSync = calls.findIndex((c, i) => i > moved && c.startsWith("fsync(") && c.includes("/md/new>"));
  const delivered = at((c) => c.includes(`/postern-delivered-marker-${name}`), "delivery marker");
  assert.ok(dataSync < moved, "the data is on disk before the rename");
  assert.ok(dirSync > moved, "new/ is fsync'd after the rename");
  assert.ok(dirSync < delivered, "delivery completes only after new/ is fsync'd");
});
