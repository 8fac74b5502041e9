/** The embedded demo: its config is valid and the password it prints logs in. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import nodemailer from "nodemailer";
import { demoConfig, demoBanner, resetDemoUser, DEMO_USER } from "../../src/cli/demo.js";
import { parseConfigObject } from "../../src/config/load.js";
import { startServer } from "../../src/server/server.js";
import { createLogger } from "../../src/server/log.js";

test("the demo configuration starts, and the printed demo password authenticates on submission", async () => {
  const dir = await mkdtemp(join(tmpdir(), "postern-demo-"));
  const raw = demoConfig() as { listeners: { port: number }[] };
  for (const l of raw.listeners) l.port = 0; // the test runs on ephemeral ports; the demo itself uses 2525/2587/2465
  const config = parseConfigObject(raw, dir);
  assert.equal(config.dataDir, join(dir, "data"));
  const quiet = new Writable({ write: (_c, _e, done) => done() });
  const server = await startServer(config, createLogger({ level: "warn", format: "pretty" }, quiet));
  try {
    const password = await resetDemoUser(server.store);
    const again = await resetDemoUser(server.store);
    assert.notEqual(password, again, "every start prints a fresh password");
    const banner = demoBanner(config.dataDir, server.listeners, again);
    assert.ok(banner.includes(`demo password    ${again}`));
    const submission = server.listeners.find((l) => l.mode === "submission")!;
    const transport = nodemailer.createTransport({
      host: "127.0.0.1",
      port: submission.port,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: DEMO_USER, pass: again },
    });
    const info = await transport.sendMail({ from: DEMO_USER, to: DEMO_USER, subject: "demo", text: "hello" });
    assert.match(info.response, /^250 2\.0\.0 Ok: queued as /);
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
