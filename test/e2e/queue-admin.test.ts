/**
 * `postern queue list|show|flush|delete|hold|release` against the real running server (through its
 * control socket), and the read-only fallback when no server runs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { freePort } from "../helpers/test-config.js";
import { startPostern, runCli } from "./helpers/postern.js";
import { sendViaMta } from "./helpers/mta-send.js";
import { startSink } from "../delivery/helpers/sink.js";
import type { QueueEntry } from "../../src/queue/admin.js";

test("queue commands list, show, hold (across a restart), flush ID, delete, delete --all-deferred, release and flush on a running server", async () => {
  const smarthostPort = await freePort(); // down at first: everything defers
  const server = await startPostern({
    config: {
      relay: { smarthost: `127.0.0.1:${smarthostPort}` },
      mynetworks: ["127.0.0.1/32"],
      queue: { firstRetrySec: 3600 }, // only the admin's flush retries within this test
    },
  });
  const cli = async (...args: string[]) => {
    const r = await runCli(["queue", ...args, "--config", server.configPath]);
    assert.equal(r.code, 0, `queue ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  const listJson = async () => JSON.parse(await cli("list", "--json")) as QueueEntry[];
  let sink: Awaited<ReturnType<typeof startSink>> | undefined;
  try {
    const ids: Record<string, string> = {};
    for (const name of ["held", "flushed", "deferred", "deleted"]) {
      ids[name] = await sendViaMta(server.ports.mta, {
        from: "sender@example.org",
        to: [`${name}@elsewhere.test`],
        data: `Subject: message ${name}\r\nMessage-ID: <${name}@example.org>\r\n\r\nbody of ${name}\r\n`,
      });
      await server.waitForLog((l) => l.event === "deferred" && l.id === ids[name]);
    }

    const listed = await listJson();
    assert.deepEqual(listed.map((e) => e.id).sort(), Object.values(ids).sort());
    for (const e of listed) {
      assert.equal(e.status, "deferred");
      assert.equal(e.sender, "sender@example.org");
      assert.match(e.lastError ?? "", /ECONNREFUSED/);
      assert.ok(e.size > 0);
    }
    const text = await cli("list");
    assert.match(text, new RegExp(`${ids.held}\\s+\\S+\\s+\\d+\\s+deferred\\s+<sender@example.org>`));
    assert.match(text, /<held@elsewhere\.test> pending after 1 attempt: .*ECONNREFUSED/);

    const shown = await cli("show", ids.held!);
    assert.match(shown, /"mailFrom": "sender@example.org"/);
    assert.match(shown, /Subject: message held\r?\n/);

    assert.match(await cli("hold", ids.held!), /^held /);
    assert.match(await cli("delete", ids.deleted!), /^deleted /);
    await assert.rejects(stat(join(server.dir, "data/queue/msg", ids.deleted!)), { code: "ENOENT" });

    await server.restart();
    const afterRestart = await listJson();
    assert.equal(afterRestart.find((e) => e.id === ids.held)?.status, "held", "hold survives a restart");
    assert.equal(afterRestart.length, 3);

    sink = await startSink({ port: smarthostPort });
    assert.match(await cli("flush", ids.flushed!), /flushed 1 message/);
    await sink.waitForMessages(1);
    await server.waitForLog((l) => l.event === "removed" && l.id === ids.flushed);

    assert.match(await cli("delete", "--all-deferred"), /deleted 1 deferred message/);
    assert.deepEqual(
      (await listJson()).map((e) => [e.id, e.status]),
      [[ids.held, "held"]],
    );

    await cli("flush"); // answers once the attempts it started are over; a held message stays put
    assert.deepEqual(
      (await listJson()).map((e) => e.id),
      [ids.held],
    );
    assert.equal(sink.messages.length, 1);

    await cli("release", ids.held!);
    await cli("flush", ids.held!);
    await sink.waitForMessages(2);
    assert.deepEqual(
      sink.messages.map((m) => m.to[0]),
      ["flushed@elsewhere.test", "held@elsewhere.test"],
      "the deleted and the deferred-then-deleted messages never left",
    );
    await server.waitForLog((l) => l.event === "removed" && l.id === ids.held);
    assert.match(await cli("list"), /Mail queue is empty/);

    // Without a server: reading still works from the spool; changes are refused.
    await server.stop();
    assert.deepEqual(await listJson(), []);
    const refused = await runCli(["queue", "hold", ids.held!, "--config", server.configPath]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /no running server/);
    const bad = await runCli(["queue", "show", "../../etc/passwd", "--config", server.configPath]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /invalid queue id/);
  } finally {
    await server.cleanup();
    await sink?.close();
  }
});
