/**
 * The real `postern serve` routing through our own DNS server: aliases, +detail, catch-all refusal
 * at RCPT, and forwarding to a remote domain's MX. (BDAT byte for byte: test/dialogs/mta.txt.)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startPostern } from "./helpers/postern.js";
import { RawSmtp } from "./helpers/raw-smtp.js";
import { startDnsServer } from "../delivery/helpers/dns-server.js";
import { startSink } from "../delivery/helpers/sink.js";

async function mailbox(dir: string, user: string): Promise<string[]> {
  const path = join(dir, "mail", "example.org", user, "new");
  const names = await readdir(path).catch(() => []);
  return Promise.all(names.map((n) => readFile(join(path, n), "latin1")));
}

test("routing: aliases and +detail exist at RCPT, unknown users get 550 5.1.1, forwarding goes to the MX from our DNS", async () => {
  const sink = await startSink();
  const dns = await startDnsServer({
    "far.test": { MX: [{ preference: 10, exchange: "mx.far.test" }] },
    "mx.far.test": { A: ["127.0.0.1"] },
  });
  const user = { address: "john@example.org", password: "route-pass" };
  let server: Awaited<ReturnType<typeof startPostern>> | undefined;
  try {
    const aliasesFile = join(process.env.TMPDIR ?? "/tmp", `postern-aliases-${process.pid}-${Date.now()}`);
    await writeFile(aliasesFile, "team@example.org: john, friend@far.test\n");
    server = await startPostern({
      users: [user],
      config: { dns: { servers: [dns.address] }, outbound: { mxPort: sink.port }, aliases: { file: aliasesFile } },
    });
    const c = await RawSmtp.open(server.ports.mta);
    await c.reply();
    await c.expect("EHLO client.test", 250);
    await c.expect("MAIL FROM:<sender@example.net>", 250);
    await c.expect("RCPT TO:<team@example.org>", 250);
    await c.expect("RCPT TO:<john+lists@example.org>", 250);
    const unknown = await c.cmd("RCPT TO:<nobody@example.org>");
    assert.match(unknown.text, /^550[ -]5\.1\.1 /);
    await c.expect("DATA", 354);
    const done = await c.cmd("Subject: team\r\n\r\nfor the team\r\n.");
    const id = /queued as (\S+)/.exec(done.text)?.[1];
    await c.expect("QUIT", 221);

    await sink.waitForMessages(1);
    assert.deepEqual(sink.messages[0]!.to, ["friend@far.test"]);
    assert.equal(sink.messages[0]!.from, "sender@example.net");
    assert.ok(dns.queries.includes("far.test MX"));
    await server.waitForLog((l) => l.event === "delivered" && l.id === id && l.to === "john+lists@example.org");
    await server.waitForLog((l) => l.event === "delivered" && l.id === id && l.to === "team@example.org");
    assert.equal((await mailbox(server.dir, "john")).length, 1, "john once: alias and +detail in one message");
  } finally {
    await server?.cleanup();
    await sink.close();
    await dns.close();
  }
});
