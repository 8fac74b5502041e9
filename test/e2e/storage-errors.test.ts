/**
 * SECURITY.md rule 16, the failure side: when the spool cannot store a message the server answers
 * 452 4.3.1 (full) or 451 4.3.0 (any other error), leaves no partial file, and never delivers that
 * message later — not even after a restart. RFC 5321 §4.2.5, §6.1.
 *
 * The full disk is real where the sandbox lets root mount a small tmpfs over the spool; elsewhere
 * the server is started with the same ENOSPC injected into its spool writer (startPostern's
 * spoolFault: a start option of the server, test/e2e/helpers/serve-with-fault.ts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { startPostern, type Postern } from "./helpers/postern.js";
import { RawSmtp } from "./helpers/raw-smtp.js";

const run = promisify(execFile);
const USER = { address: "john@example.org", password: "pw-john-123" };
const CONFIG = { limits: { greetPauseMs: 0, authFailureDelayMs: 10, messageSize: 4 * 1024 * 1024 } };

/** Sends one message of `bodyBytes` octets on port 25; returns the final reply. */
async function send(server: Postern, bodyBytes: number): Promise<string> {
  const c = await RawSmtp.open(server.ports.mta);
  try {
    const step = async (data: string | null, expected: RegExp) => {
      if (data !== null) c.write(Buffer.from(data));
      const r = await c.reply(30_000);
      assert.match(r.text, expected);
      return r.text;
    };
    await step(null, /^220/);
    await step("EHLO client.test\r\n", /^250/);
    await step("MAIL FROM:<a@client.test>\r\n", /^250 2\.1\.0/);
    await step("RCPT TO:<john@example.org>\r\n", /^250 2\.1\.5/);
    await step("DATA\r\n", /^354/);
    const line = "x".repeat(78) + "\r\n";
    const body = line.repeat(Math.ceil(bodyBytes / line.length));
    const final = await step(`Subject: size ${bodyBytes}\r\n\r\n${body}.\r\n`, /^\d{3} /);
    // The session goes on after a storage error: the client may try again later.
    await step("NOOP\r\n", /^250 2\.0\.0/);
    return final;
  } finally {
    c.close();
  }
}

async function spoolFiles(server: Postern): Promise<string[]> {
  const all: string[] = [];
  for (const sub of ["tmp", "msg", "env"]) all.push(...(await readdir(join(server.dir, "data/queue", sub))));
  return all;
}

async function mailbox(server: Postern): Promise<string[]> {
  return readdir(join(server.dir, "mail/example.org/john/new")).catch(() => []);
}

/** Mounts a 256 KiB tmpfs over the spool (server stopped and started around it); false if not allowed. */
async function mountSmallSpool(server: Postern): Promise<boolean> {
  await server.stop();
  const ok = await run("mount", ["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", join(server.dir, "data/queue")]).then(
    () => true,
    () => false,
  );
  await server.restart();
  return ok;
}

test("rule 16: a full spool filesystem gets 452 4.3.1, leaves no partial file, and the message is never delivered", async (t) => {
  let server = await startPostern({ users: [USER], config: CONFIG });
  let mounted = await mountSmallSpool(server);
  if (!mounted) {
    t.diagnostic("tmpfs mount not permitted here: ENOSPC injected into the spool writer at 262144 octets");
    await server.cleanup();
    server = await startPostern({ users: [USER], config: CONFIG, spoolFault: "ENOSPC@262144" });
  }
  try {
    assert.match(await send(server, 600 * 1024), /^452 4\.3\.1 /);
    assert.deepEqual(await spoolFiles(server), [], "the partial file was removed");

    // Space is free again at once (the partial file is gone): a small message goes through.
    const ok = await send(server, 2000);
    const id = /^250 2\.0\.0 Ok: queued as (\S+)/.exec(ok)?.[1];
    assert.ok(id, ok);
    await server.waitForLog((l) => l.event === "removed" && l.id === id);
    // Lines arrive in order: with the small message's lines in, a "queued" line for the big one would be too.
    const queued = server.logs.filter((l) => l.event === "queued").map((l) => l.id);
    assert.deepEqual(queued, [id], "the refused message was never queued");

    // A restart (spool recovery) brings nothing back: only the small message was ever delivered.
    await server.restart();
    await server.waitForLog((l) => l.event === "queue-started");
    assert.deepEqual(await spoolFiles(server), []);
    assert.deepEqual((await mailbox(server)).length, 1);
  } finally {
    await server.stop();
    if (mounted) await run("umount", [join(server.dir, "data/queue")]);
    mounted = false;
    await server.cleanup();
  }
});

test("rule 16: a failing fsync at commit gets 451 4.3.0, leaves no file, and nothing is delivered after a restart", async () => {
  const server = await startPostern({ users: [USER], config: CONFIG, spoolFault: "EIO@commit" });
  try {
    assert.match(await send(server, 1000), /^451 4\.3\.0 /);
    assert.match(await send(server, 10), /^451 4\.3\.0 /);
    assert.deepEqual(await spoolFiles(server), []);
    // The failure is logged (waitForLog times out otherwise).
    await server.waitForLog((l) => l.event === "spool-error" || l.event === "data-refused");

    // Without the fault, after a restart: the queue is empty and nothing was ever delivered.
    server.spoolFault = undefined;
    await server.restart();
    await server.waitForLog((l) => l.event === "queue-started" && l !== server.logs.find((x) => x.event === "queue-started"));
    assert.deepEqual(await spoolFiles(server), []);
    assert.deepEqual(await mailbox(server), []);
    assert.match(await send(server, 10), /^250 2\.0\.0 Ok: queued as /, "the same server stores mail once the disk works");
  } finally {
    await server.cleanup();
  }
});

test("rule 16: a write error in the middle of DATA gets 451 4.3.0 and leaves no partial file", async () => {
  const server = await startPostern({ users: [USER], config: CONFIG, spoolFault: "EIO@4096" });
  try {
    assert.match(await send(server, 64 * 1024), /^451 4\.3\.0 /);
    assert.deepEqual(await spoolFiles(server), []);
    assert.match(await send(server, 100), /^250 2\.0\.0 Ok: queued as /, "small messages still fit under the fault");
  } finally {
    await server.cleanup();
  }
});
