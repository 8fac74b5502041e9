import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { pathToFileURL } from "node:url";
import { WHOLE_READ_BYTES } from "../../src/queue/message-file.js";
import { isQueueId, newQueueId } from "../../src/queue/queue-id.js";
import { Spool } from "../../src/queue/spool.js";
import { LeaseLostError } from "../../src/queue/store.js";
import type { Envelope } from "../../src/queue/types.js";
import { commitMessage, memoryLogger, newEnvelope, newSpool, tempDir } from "./helpers.js";
import { traceScript } from "../helpers/strace.js";

test("queue ids are filename-safe, unique and sort by time", () => {
  const a = newQueueId(1_700_000_000_000);
  const b = newQueueId(1_700_000_000_001);
  assert.ok(isQueueId(a) && isQueueId(b));
  assert.ok(a < b);
  const many = new Set(Array.from({ length: 10_000 }, () => newQueueId(1_700_000_000_000)));
  assert.equal(many.size, 10_000);
  assert.ok(!isQueueId("../etc/passwd") && !isQueueId(a.toUpperCase()));
});

test("commit stores the exact bytes and a JSON envelope, then lists the message", async () => {
  const spool = await newSpool({ now: () => Date.parse("2024-05-01T10:00:00Z") });
  const writer = await spool.openWriter();
  await writer.write(Buffer.from("Subject: hi\r\n\r\n"));
  await writer.write(Buffer.from([0xe2, 0x82, 0xac, 0x0d, 0x0a]));
  assert.equal(writer.bytesWritten, 20);
  assert.deepEqual(await spool.list(), [], "nothing visible before commit");
  const id = await writer.commit(newEnvelope(["a@example.org", "b@example.org"]));

  assert.ok(isQueueId(id));
  assert.deepEqual(await spool.list(), [id]);
  const bytes = await readFile(spool.messagePath(id));
  assert.deepEqual(bytes, Buffer.concat([Buffer.from("Subject: hi\r\n\r\n"), Buffer.from([0xe2, 0x82, 0xac, 0x0d, 0x0a])]));
  const env = await spool.readEnvelope(id);
  assert.equal(env.id, id);
  assert.equal(env.size, 20);
  assert.equal(env.receivedAt, "2024-05-01T10:00:00.000Z");
  assert.equal(env.mailFrom, "sender@example.net");
  assert.deepEqual(env.recipients, [
    { address: "a@example.org", status: "pending", attempts: 0 },
    { address: "b@example.org", status: "pending", attempts: 0 },
  ]);
  assert.deepEqual(await readdir(join(spool.dir, "tmp")), []);
  assert.equal((await stat(spool.messagePath(id))).mode & 0o777, 0o600);
});

test("envelope values cannot inject queue metadata (SECURITY rule 17)", async () => {
  const spool = await newSpool({ fsync: false });
  const evil = 'x@example.org"}],"recipients":[{"address":"victim@example.org';
  const writer = await spool.openWriter();
  await writer.write(Buffer.from("x"));
  const id = await writer.commit({ ...newEnvelope([evil]), mailFrom: "a\r\nb@example.net" });
  const env = await spool.readEnvelope(id);
  assert.equal(env.recipients.length, 1);
  assert.equal(env.recipients[0].address, evil);
  assert.equal(env.mailFrom, "a\r\nb@example.net");
});

test("abort removes the half-written message and is safe to repeat", async () => {
  const spool = await newSpool();
  const writer = await spool.openWriter();
  await writer.write(Buffer.alloc(100_000, 0x61));
  await writer.abort();
  await writer.abort();
  assert.deepEqual(await readdir(join(spool.dir, "tmp")), []);
  assert.deepEqual(await spool.list(), []);
  await assert.rejects(writer.write(Buffer.from("x")), /aborted/);
  await assert.rejects(writer.commit(newEnvelope()), /aborted/);
});

test("abort after a successful commit leaves the acknowledged message alone", async () => {
  const spool = await newSpool();
  const writer = await spool.openWriter();
  await writer.write(Buffer.from("body"));
  const id = await writer.commit(newEnvelope());
  await writer.abort();
  assert.deepEqual(await spool.list(), [id]);
});

test("large writes respect back-pressure and arrive intact", async () => {
  const spool = await newSpool({ fsync: false });
  const writer = await spool.openWriter();
  const chunk = Buffer.alloc(256 * 1024);
  for (let i = 0; i < 16; i++) {
    chunk.fill(i);
    await writer.write(Buffer.from(chunk));
  }
  const id = await writer.commit(newEnvelope());
  const bytes = await readFile(spool.messagePath(id));
  assert.equal(bytes.length, 16 * 256 * 1024);
  for (let i = 0; i < 16; i++) assert.equal(bytes[i * 256 * 1024 + 7], i);
});

test("a failed commit removes every file so a 4xx'd message is never delivered", async () => {
  const spool = await newSpool();
  // Replace env/ with a file: the envelope rename (the commit point) fails.
  await rm(join(spool.dir, "env"), { recursive: true });
  await writeFile(join(spool.dir, "env"), "");
  const writer = await spool.openWriter();
  await writer.write(Buffer.from("body"));
  await assert.rejects(writer.commit(newEnvelope()));
  assert.deepEqual(await readdir(join(spool.dir, "msg")), []);
  assert.deepEqual(await readdir(join(spool.dir, "tmp")), []);
  await writer.abort(); // still safe
});

test("recovery: empties tmp/, drops messages never committed, quarantines envelopes without bytes", async () => {
  const dir = await tempDir();
  const logger = memoryLogger();
  const first = new Spool(dir, { logger });
  await first.init();
  const kept = await commitMessage(first, "kept");

  // Crash states made by hand.
  const halfWritten = newQueueId();
  await writeFile(join(dir, "tmp", `${halfWritten}.msg`), "partial");
  await writeFile(join(dir, "tmp", `${halfWritten}.json`), '{"id":');
  const orphanMessage = newQueueId();
  await writeFile(join(dir, "msg", orphanMessage), "renamed but envelope never committed");
  const orphanEnvelope = newQueueId();
  const env: Envelope = { ...(await first.readEnvelope(kept)), id: orphanEnvelope };
  await writeFile(join(dir, "env", `${orphanEnvelope}.json`), JSON.stringify(env));

  const second = new Spool(dir, { logger });
  const report = await second.init();
  assert.equal(report.removedTmp, 2);
  assert.deepEqual(report.removedOrphanMessages, [orphanMessage]);
  assert.deepEqual(report.quarantinedEnvelopes, [orphanEnvelope]);
  assert.equal(report.queued, 1);
  assert.deepEqual(await second.list(), [kept]);
  assert.deepEqual(await readdir(join(dir, "tmp")), []);
  assert.deepEqual(await readdir(join(dir, "msg")), [kept]);
  assert.deepEqual(await readdir(join(dir, "quarantine")), [`${orphanEnvelope}.json`]);
  assert.ok(logger.entries.some((e) => e.level === "error" && (e.obj as { id?: string }).id === orphanEnvelope));
});

test("recovery after an unclean stop removes commits cut short (envelope torn, size or hash wrong) and keeps whole ones", async () => {
  const dir = await tempDir();
  const logger = memoryLogger();
  const first = new Spool(dir, { logger });
  assert.equal((await first.init()).uncleanStop, false);
  const kept = await commitMessage(first, "kept");
  const keptEnv = await first.readEnvelope(kept);
  // No close(): the process "crashed". Commit states a crash can leave, made by hand:
  const torn = newQueueId();
  await writeFile(join(dir, "msg", torn), "kept");
  await writeFile(join(dir, "env", `${torn}.json`), JSON.stringify({ ...keptEnv, id: torn }).slice(0, 40));
  const short = newQueueId();
  await writeFile(join(dir, "msg", short), "ke");
  await writeFile(join(dir, "env", `${short}.json`), JSON.stringify({ ...keptEnv, id: short }));
  const unsynced = newQueueId(); // right size, but the bytes never reached the disk
  await writeFile(join(dir, "msg", unsynced), "\0\0\0\0");
  await writeFile(join(dir, "env", `${unsynced}.json`), JSON.stringify({ ...keptEnv, id: unsynced }));

  const second = new Spool(dir, { logger });
  const report = await second.init();
  assert.equal(report.uncleanStop, true);
  assert.deepEqual([...report.removedIncomplete].sort(), [torn, short, unsynced].sort());
  assert.equal(report.queued, 1);
  assert.deepEqual(await second.list(), [kept]);
  assert.deepEqual(await readdir(join(dir, "msg")), [kept]);
  assert.equal(logger.entries.filter((e) => (e.obj as { event?: string }).event === "spool-incomplete-removed").length, 3);
});

test("the in-use marker: present while the spool is open, gone after close(), so only an unclean stop is reported", async () => {
  const dir = await tempDir();
  const spool = new Spool(dir);
  await spool.init();
  await stat(join(dir, "in-use"));
  await spool.close();
  await assert.rejects(stat(join(dir, "in-use")), { code: "ENOENT" });
  const again = new Spool(dir);
  assert.equal((await again.init()).uncleanStop, false);
  const crashedAfter = new Spool(dir); // `again` never closed
  assert.equal((await crashedAfter.init()).uncleanStop, true);
});

test("updateEnvelope replaces atomically: readers only ever see a whole envelope", async () => {
  const spool = await newSpool();
  const id = await commitMessage(spool, "x", ["a@example.org"]);
  const env = await spool.readEnvelope(id);
  let stop = false;
  let reads = 0;
  const reader = (async () => {
    while (!stop) {
      const seen = await spool.readEnvelope(id); // throws on a torn file
      assert.ok(seen.recipients[0].attempts >= 0);
      reads++;
      await new Promise((resolve) => setImmediate(resolve)); // the read is synchronous: let the writer run
    }
  })();
  for (let i = 1; i <= 30; i++) {
    env.recipients[0].attempts = i;
    env.recipients[0].lastResult = "451 4.3.0 ".padEnd(200 * i, "x");
    await spool.updateEnvelope(env);
  }
  stop = true;
  await reader;
  assert.ok(reads > 0);
  assert.equal((await spool.readEnvelope(id)).recipients[0].attempts, 30);
  assert.deepEqual(await readdir(join(spool.dir, "tmp")), []);
});

test("updateEnvelope refuses to resurrect a removed message; remove deletes both files", async () => {
  const spool = await newSpool();
  const id = await commitMessage(spool, "x");
  const env = await spool.readEnvelope(id);
  await spool.remove(id);
  await spool.remove(id); // idempotent
  assert.deepEqual(await spool.list(), []);
  await assert.rejects(stat(spool.messagePath(id)), { code: "ENOENT" });
  await assert.rejects(spool.updateEnvelope(env), { code: "ENOENT" });
  assert.deepEqual(await readdir(join(spool.dir, "env")), []);
  assert.throws(() => spool.messagePath("../../etc/passwd"), /invalid queue id/);
});

test("message() reads the spooled bytes, with the envelope's headerPrefix on top", async () => {
  const spool = await newSpool({ fsync: false });
  const id = await commitMessage(spool, "line 1\r\nline 2\r\n");
  const env = await spool.readEnvelope(id);
  assert.equal((await buffer(spool.message(env).open())).toString(), "line 1\r\nline 2\r\n");
  assert.equal(spool.message(env).size, 16);
  const prefixed = { ...env, headerPrefix: "X-Top: 1\r\n" };
  assert.equal((await buffer(spool.message(prefixed).open())).toString(), "X-Top: 1\r\nline 1\r\nline 2\r\n");
  assert.equal(spool.message(prefixed).size, 26);
});

test("message() streams a large message with its prefix, and a missing one fails on read", async () => {
  const spool = await newSpool({ fsync: false });
  const body = Buffer.alloc(WHOLE_READ_BYTES + 1000, 0x61);
  const id = await commitMessage(spool, body);
  const env = { ...(await spool.readEnvelope(id)), headerPrefix: "X-Top: 1\r\n" };
  const got = await buffer(spool.message(env).open());
  assert.deepEqual(got, Buffer.concat([Buffer.from("X-Top: 1\r\n"), body]));
  await spool.remove(id);
  await assert.rejects(buffer(spool.message(env).open()), { code: "ENOENT" });
  await assert.rejects(buffer(spool.message({ ...env, size: 10 }).open()), { code: "ENOENT" });
});

test("leases: one holder at a time; a lost or released lease cannot change the message", async () => {
  let t = 1_000_000;
  const spool = await newSpool({ fsync: false, now: () => t });
  const id = await commitMessage(spool, "x\r\n");
  const lease = await spool.claim(id, 1000);
  assert.ok(lease);
  assert.equal(await spool.claim(id, 1000), null, "held: no second lease");
  const env = await spool.readEnvelope(id);
  await spool.updateEnvelope({ ...env, held: true }, lease);
  t += 1001; // expired: another holder may take over, and the first one's changes are refused
  const second = await spool.claim(id, 1000);
  assert.ok(second);
  await assert.rejects(spool.updateEnvelope(env, lease), LeaseLostError);
  await assert.rejects(spool.remove(id, lease), LeaseLostError);
  await second.release();
  await lease.release(); // not the current one: changes nothing
  const third = await spool.claim(id, 1000);
  assert.ok(third);
  await spool.remove(id, third);
  assert.equal(await spool.has(id), false);
});

test("group commit: 20 concurrent commits all resolve, all durable, sharing directory fsyncs", async () => {
  const spool = await newSpool();
  const n = 20;
  const writers = await Promise.all(Array.from({ length: n }, () => spool.openWriter()));
  await Promise.all(writers.map((w, i) => w.write(Buffer.from(`message ${i}\r\n`))));
  const before = spool.dirSyncCount;
  const ids = await Promise.all(writers.map((w) => w.commit(newEnvelope())));
  const syncs = spool.dirSyncCount - before;
  assert.equal(new Set(ids).size, n);
  assert.deepEqual(await spool.list(), [...ids].sort());
  for (const [i, id] of ids.entries()) {
    assert.equal(await readFile(spool.messagePath(id), "utf8"), `message ${i}\r\n`);
  }
  assert.ok(syncs < 2 * n, `expected shared directory fsyncs, got ${syncs} for ${n} commits`);
});

test("commit order proven with strace: names and data fsync'd in one round, then acknowledge (rule 16)", async () => {
  const dir = await tempDir();
  const spoolUrl = pathToFileURL(join(import.meta.dirname, "../../src/queue/spool.js")).href;
  const script = `
    import { Spool } from ${JSON.stringify(spoolUrl)};
    import { accessSync } from "node:fs";
    const spool = new Spool(${JSON.stringify(dir)});
    await spool.init();
    const w = await spool.openWriter();
    await w.write(Buffer.from("hello\\r\\n"));
    const id = await w.commit({ mailFrom: "a@b.example", client: { ip: "127.0.0.1", helo: "h", listener: "mta" }, recipients: [{ address: "c@d.example" }] });
    try { accessSync("/postern-ack-marker-" + id); } catch {}
    process.stdout.write(id);
  `;
  const { stdout, calls, at } = await traceScript(script, "openat,fsync,fdatasync,rename,renameat,renameat2");
  const id = stdout.trim();
  assert.ok(isQueueId(id));
  const created = (path: string) => (c: string) => c.startsWith("openat(") && c.includes(`"${path}"`) && c.includes("O_CREAT");
  const msgCreate = at(created(join(dir, "msg", id)), "creation of msg/<id>");
  const envCreate = at(created(join(dir, "env", `${id}.json`)), "creation of env/<id>.json");
  const dataSync = at((c) => c.startsWith("fdatasync(") && c.includes(`/msg/${id}>`), "fdatasync of the data");
  const envSync = at((c) => c.startsWith("fdatasync(") && c.includes(`/env/${id}.json>`), "fdatasync of the envelope");
  const msgDirSync = calls.findIndex((c, i) => i > msgCreate && c.startsWith("fsync(") && c.includes(`${dir}/msg>`));
  const envDirSync = calls.findIndex((c, i) => i > envCreate && c.startsWith("fsync(") && c.includes(`${dir}/env>`));
  const ack = at((c) => c.includes(`/postern-ack-marker-${id}`), "acknowledgement marker");
  assert.ok(msgDirSync > msgCreate, "msg/ is fsync'd after the data file was created in it");
  assert.ok(envDirSync > envCreate, "env/ is fsync'd after the envelope was created in it");
  assert.ok(dataSync > envCreate, "the data fsync runs in the envelope's round, not a round of its own");
  assert.ok(Math.max(dataSync, envSync, msgDirSync, envDirSync) < ack, "acknowledged only after every file and directory fsync");
  assert.ok(!calls.some((c) => c.startsWith("rename")), "no rename on the way to the 250");
});

test("init creates the layout with private permissions", async () => {
  const dir = join(await tempDir(), "nested", "queue");
  await mkdir(dir, { recursive: true });
  const spool = new Spool(dir);
  await spool.init();
  for (const sub of ["tmp", "msg", "env", "quarantine"]) {
    assert.equal((await stat(join(dir, sub))).mode & 0o777, 0o700);
  }
});

test("an injected fault (SpoolOptions.fault, tests only) fails a write past its offset or the commit, and leaves no file", async () => {
  const full = await newSpool({ fsync: false, fault: { code: "ENOSPC", at: 10 } });
  const w = await full.openWriter();
  await w.write(Buffer.from("0123456789"));
  await assert.rejects(w.write(Buffer.from("x")), { code: "ENOSPC" });
  await assert.rejects(w.commit(newEnvelope()), { code: "ENOSPC" });
  await w.abort();
  assert.deepEqual([...(await readdir(join(full.dir, "msg"))), ...(await readdir(join(full.dir, "env")))], []);

  const broken = await newSpool({ fsync: false, fault: { code: "EIO", at: "commit" } });
  const b = await broken.openWriter();
  await b.write(Buffer.from("small\r\n"));
  await assert.rejects(b.commit(newEnvelope()), { code: "EIO" });
  assert.deepEqual([...(await readdir(join(broken.dir, "msg"))), ...(await readdir(join(broken.dir, "env")))], []);
  assert.deepEqual(await broken.list(), []);
});
