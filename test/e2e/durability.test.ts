/**
 * SECURITY.md rule 16, shown end to end: the real `postern serve` under `strace -f` acknowledges a
 * message only after the fsyncs; and a client that disconnects at any point of a transaction
 * leaves no partial message and gets nothing delivered.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { stringify } from "yaml";
import { BIN, ROOT, runCli, startPostern, type LogLine } from "./helpers/postern.js";
import { RawSmtp } from "./helpers/raw-smtp.js";
import { completedCalls } from "../helpers/strace.js";

const USER = { address: "john@example.org", password: "pw-john-123" };

/** The pids of a process's children (the node process strace started). */
async function childPids(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8");
  return text.trim().split(/\s+/).filter(Boolean).map(Number);
}

/** One short submission on port 25, MAIL/RCPT/DATA pipelined; returns the queue id from the 250 reply. */
async function submitOne(port: number): Promise<string> {
  const c = await RawSmtp.open(port);
  try {
    const expect = async (send: string | null, code: RegExp) => {
      if (send !== null) c.write(Buffer.from(send));
      const r = await c.reply(30_000);
      assert.match(r.text, code, `reply to ${JSON.stringify(send)}`);
      return r.text;
    };
    await expect(null, /^220/);
    await expect("EHLO client.test\r\n", /^250/);
    await expect("MAIL FROM:<a@client.test>\r\nRCPT TO:<john@example.org>\r\nDATA\r\n", /^250 2\.1\.0/);
    await expect(null, /^250 2\.1\.5/);
    await expect(null, /^354/);
    const done = await expect("Subject: traced\r\n\r\nhello\r\n.\r\n", /^250 2\.0\.0 Ok: queued as \S+/);
    return /queued as (\S+)/.exec(done)![1]!;
  } finally {
    c.close();
  }
}

test("rule 16 under strace: spool file and directory fsyncs happen before the 250 is written", async () => {
  const dir = await mkdtemp(join(tmpdir(), "postern-strace-"));
  const dataDir = join(dir, "data");
  const configPath = join(dir, "postern.yaml");
  await writeFile(
    configPath,
    stringify({
      hostname: "mail.example.org",
      dataDir,
      domains: ["example.org"],
      listeners: [{ address: "127.0.0.1", port: 0, mode: "mta" }],
      delivery: { maildir: join(dir, "mail/{domain}/{localpart}") },
      limits: { greetPauseMs: 0 },
    }),
  );
  const added = await runCli(["user", "add", USER.address, "--password-stdin", "--config", configPath], USER.password + "\n");
  assert.equal(added.code, 0, added.stderr);
  const traceFile = join(dir, "trace");
  const strace = spawn(
    "strace",
    [
      "-f",
      "-y",
      "-s",
      "200",
      "-o",
      traceFile,
      "-e",
      "trace=openat,fsync,fdatasync,rename,renameat,renameat2,write,writev,sendmsg,sendto",
      process.execPath,
      BIN,
      "serve",
      "--config",
      configPath,
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  const exited = new Promise<void>((ok) => strace.once("exit", () => ok()));
  try {
    const port = await new Promise<number>((ok, fail) => {
      strace.once("exit", (code) => fail(new Error(`strace/postern exited early (${code})`)));
      createInterface({ input: strace.stdout! }).on("line", (text) => {
        try {
          const l = JSON.parse(text) as LogLine;
          if (l.event === "listening") ok(l.port as number);
        } catch {
          /* not a log line */
        }
      });
    });
    const id = await submitOne(port);
    // Stop the traced server (by its own pid: strace would detach and leave it running).
    for (const pid of await childPids(strace.pid!)) process.kill(pid, "SIGKILL");
    await exited;

    const calls = completedCalls(await readFile(traceFile, "utf8"));
    const at = (pred: (c: string) => boolean, what: string) => {
      const i = calls.findIndex(pred);
      assert.ok(i >= 0, `${what} not found among ${calls.length} traced calls`);
      return i;
    };
    const queue = join(dataDir, "queue");
    const created = (path: string) => (c: string) => c.startsWith("openat(") && c.includes(`"${path}"`) && c.includes("O_CREAT");
    const msgCreate = at(created(join(queue, "msg", id)), "creation of the message file");
    const envCreate = at(created(join(queue, "env", `${id}.json`)), "creation of the envelope");
    const dataSync = at((c) => /^f(data)?sync\(/.test(c) && c.includes(`/msg/${id}>`), "fsync of the spool file");
    const envSync = at((c) => /^f(data)?sync\(/.test(c) && c.includes(`/env/${id}.json>`), "fsync of the envelope");
    const dirSyncAfter = (from: number, sub: string) => calls.findIndex((c, i) => i > from && c.startsWith("fsync(") && c.includes(`${queue}/${sub}>`));
    const msgDirSync = dirSyncAfter(msgCreate, "msg");
    const envDirSync = dirSyncAfter(envCreate, "env");
    const ack = at((c) => /^(write|writev|sendmsg|sendto)\(\d+<(socket|TCP)/.test(c) && c.includes(`250 2.0.0 Ok: queued as ${id}`), "write of the 250 reply");
    assert.ok(msgDirSync > msgCreate && envDirSync > envCreate, "each directory is synced after the name was created in it");
    assert.ok(dataSync < ack && envSync < ack, "the 250 is written after the file fsyncs");
    assert.ok(msgDirSync < ack && envDirSync < ack, "the 250 is written after both directory fsyncs");
    // RFC 2920 §3.1 (connection.ts): the replies to the pipelined MAIL, RCPT and DATA share one write.
    const groupWrite = at((c) => /^(write|writev|sendmsg|sendto)\(\d+<(socket|TCP)/.test(c) && c.includes("354 "), "write of the 354 reply");
    assert.match(calls[groupWrite]!, /250 2\.1\.0[\s\S]*250 2\.1\.5[\s\S]*354 /, "MAIL, RCPT and DATA replies in one write");
  } finally {
    if (strace.exitCode === null && strace.signalCode === null) {
      for (const pid of await childPids(strace.pid!).catch(() => [])) process.kill(pid, "SIGKILL");
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  }
});

/** What the client does before it drops the connection: the commands, then the message byte by byte. */
const COMMANDS = ["EHLO client.test\r\n", "MAIL FROM:<a@client.test>\r\n", "RCPT TO:<john@example.org>\r\n", "DATA\r\n"];
const MESSAGE = "Subject: cut\r\n\r\nhi\r\n..x\r\n.\r\n";

test("rule 16: a client that disconnects at every point of a transaction leaves no partial message and nothing delivered", async () => {
  const server = await startPostern({ users: [USER], config: { limits: { greetPauseMs: 0, authFailureDelayMs: 10 } } });
  try {
    const spoolFiles = async () => {
      const all: string[] = [];
      for (const sub of ["tmp", "msg", "env"]) all.push(...(await readdir(join(server.dir, "data/queue", sub))));
      return all;
    };
    const disconnects = () => server.logs.filter((l) => l.event === "disconnect").length;
    // Cut points: after the greeting, after each command's reply, in the middle of a command line,
    // and after every byte of the message except the last (which would complete it).
    const cuts: { commands: number; partial?: string; bytes: number }[] = [];
    for (let k = 0; k <= COMMANDS.length; k++) cuts.push({ commands: k, bytes: 0 });
    cuts.push({ commands: 1, partial: "MAIL FROM:<a@cl", bytes: 0 });
    for (let b = 1; b < MESSAGE.length; b++) cuts.push({ commands: COMMANDS.length, bytes: b });

    for (const cut of cuts) {
      const before = disconnects();
      const c = await RawSmtp.open(server.ports.mta);
      await c.reply(30_000);
      for (const cmd of COMMANDS.slice(0, cut.commands)) {
        c.write(Buffer.from(cmd));
        assert.match((await c.reply(30_000)).text, /^(250|354)/);
      }
      if (cut.partial) c.write(Buffer.from(cut.partial));
      if (cut.bytes > 0) c.write(Buffer.from(MESSAGE.slice(0, cut.bytes)));
      c.close();
      // Logged only once the session's abort has removed whatever was half-received.
      await server.waitForLog(() => disconnects() > before);
      assert.deepEqual(await spoolFiles(), [], `spool after a cut at ${JSON.stringify(cut)}`);
    }
    assert.equal(server.logs.filter((l) => l.event === "queued").length, 0, "nothing was queued");

    // The control: the same steps to the end do deliver, so the checks above could see a message.
    const id = await submitOne(server.ports.mta);
    await server.waitForLog((l) => l.event === "removed" && l.id === id);
    assert.equal((await readdir(join(server.dir, "mail/example.org/john/new"))).length, 1, "exactly the one complete message");
  } finally {
    await server.cleanup();
  }
});
