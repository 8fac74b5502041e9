/**
 * The real `postern serve`: CHUNKING/BDAT from a raw client (pipelined, binary, mixed with DATA),
 * and routing through our own DNS server — aliases, +detail, catch-all refusal at RCPT, and
 * forwarding to a remote domain's MX.
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

test("BDAT on port 25: pipelined binary chunks are queued and delivered byte for byte; DATA after BDAT is 503", async () => {
  const user = { address: "john@example.org", password: "bdat-pass" };
  const server = await startPostern({ users: [user] });
  try {
    const c = await RawSmtp.open(server.ports.mta);
    await c.reply();
    const ehlo = await c.cmd("EHLO client.test");
    assert.match(ehlo.text, /\bCHUNKING\b/);

    const part1 = Buffer.from("Subject: chunks\r\n\r\n.no dot-stuffing here\r\n", "latin1");
    const part2 = Buffer.concat([Buffer.from([0xc3, 0xa9, 0x0d, 0x0a]), Buffer.from("BDAT 5 LAST\r\nQUIT\r\n")]); // looks like commands: it is data
    // RFC 3030 §4.2: MAIL, RCPT and every chunk in one write.
    c.write(Buffer.concat([
      Buffer.from(`MAIL FROM:<sender@example.net>\r\nRCPT TO:<john@example.org>\r\nBDAT ${part1.length}\r\n`),
      part1,
      Buffer.from(`BDAT ${part2.length} LAST\r\n`),
      part2,
    ]));
    const replies = [await c.reply(), await c.reply(), await c.reply(), await c.reply()];
    assert.deepEqual(replies.map((r) => r.code), [250, 250, 250, 250], replies.map((r) => r.text).join(" | "));
    const id = /queued as (\S+)/.exec(replies[3]!.text)?.[1];
    assert.ok(id, replies[3]!.text);

    await c.expect("MAIL FROM:<sender@example.net>", 250);
    await c.expect("RCPT TO:<john@example.org>", 250);
    c.write("BDAT 3\r\nabc");
    assert.equal((await c.reply()).code, 250);
    const mixed = await c.cmd("DATA");
    assert.match(mixed.text, /^503[ -]5\.5\.1 /);
    await c.expect("RSET", 250);
    await c.expect("QUIT", 221);

    await server.waitForLog((l) => l.event === "delivered" && l.id === id);
    const [stored] = await mailbox(server.dir, "john");
    assert.ok(stored);
    assert.ok(stored.endsWith(Buffer.concat([part1, part2]).toString("latin1")), "the chunks, concatenated, unchanged");
  } finally {
    await server.cleanup();
  }
});

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
