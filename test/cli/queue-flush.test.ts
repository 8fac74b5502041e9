/**
 * `postern queue flush` counts what it really flushed: a held message is not attempted, so it is
 * not counted, and the admin is told it was skipped. Commands that change the queue say which
 * configuration and data directory they used.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { freePort } from "../helpers/test-config.js";
import { runCli, startPostern } from "../e2e/helpers/postern.js";
import { sendViaMta } from "../e2e/helpers/mta-send.js";

test("queue flush skips held messages, says so, and counts only what it flushed", async () => {
  const server = await startPostern({
    config: { relay: { smarthost: `127.0.0.1:${await freePort()}` }, mynetworks: ["127.0.0.1/32"], queue: { firstRetrySec: 3600 } },
  });
  try {
    const ids: string[] = [];
    for (const name of ["held", "waiting"]) {
      const id = await sendViaMta(server.ports.mta, { from: "sender@example.org", to: [`${name}@elsewhere.test`], data: `Subject: ${name}\r\n\r\nbody\r\n` });
      await server.waitForLog((l) => l.event === "deferred" && l.id === id);
      ids.push(id);
    }
    const hold = await runCli(["queue", "hold", ids[0]!, "--config", server.configPath]);
    assert.equal(hold.code, 0, hold.stderr);
    assert.equal(hold.stderr, `postern: using config ${server.configPath} (--config), data directory ${server.dir}/data\n`);

    const flush = await runCli(["queue", "flush", "--config", server.configPath]);
    assert.equal(flush.code, 0, flush.stderr);
    assert.equal(flush.stdout, `flushed 1 message; skipped 1 held message (postern queue release ID first): ${ids[0]}\n`);
    assert.match(flush.stderr, /^postern: using config .* \(--config\), data directory /);
    const json = await runCli(["queue", "flush", "--json", "--config", server.configPath]);
    assert.deepEqual(JSON.parse(json.stdout), { flushed: 1, held: [ids[0]] });

    // Reading changes nothing: no announcement on list.
    const list = await runCli(["queue", "list", "--config", server.configPath]);
    assert.equal(list.stderr, "");
  } finally {
    await server.cleanup();
  }
});
