/**
 * The inbound checks through the real `postern serve` (startPostern) and the test DNS responder:
 * DMARC p=reject refused at the end of DATA and of BDAT LAST with nothing queued, an authenticated
 * client never refused, a forged Authentication-Results: in our name removed and a foreign one
 * kept, SPF -all refused at MAIL when inbound.spfRejectFail is set.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { startPostern, type LogLine, type Postern } from "../e2e/helpers/postern.js";
import { RawSmtp } from "../e2e/helpers/raw-smtp.js";
import { startDnsServer } from "../delivery/helpers/dns-server.js";
import { dkimEntry, rsaKey, signed } from "./helpers.js";

const key = rsaKey();
const ZONE = {
  "sender.example.net": { TXT: ["v=spf1 ip4:127.0.0.1 -all"] },
  "forger.example.net": { TXT: ["v=spf1 -all"] },
  "_dmarc.bank.example.com": { TXT: ["v=DMARC1; p=reject"] },
  "s1._domainkey.sender.example.net": dkimEntry(key),
};

async function mailbox(server: Postern, user: string): Promise<string[]> {
  const path = join(server.dir, "mail", "example.org", user, "new");
  const names = await readdir(path).catch(() => []);
  return Promise.all(names.map((n) => readFile(join(path, n), "latin1")));
}

async function session(server: Postern): Promise<RawSmtp> {
  const c = await RawSmtp.open(server.ports.mta);
  await c.reply();
  await c.expect("EHLO client.sender.example.net", 250);
  return c;
}

const spoof = "From: <ceo@bank.example.com>\r\nTo: <john@example.org>\r\nSubject: pay\r\n\r\nwire the money\r\n";

test("DMARC p=reject is enforced at the end of DATA and of BDAT LAST; an authenticated client is never refused", async () => {
  const dns = await startDnsServer(ZONE);
  const user = { address: "john@example.org", password: "inbound-pass", senders: ["ceo@bank.example.com"] };
  let server: Postern | undefined;
  try {
    server = await startPostern({
      users: [user],
      config: {
        dns: { servers: [dns.address] },
        inbound: { dmarc: "enforce" },
        listeners: [
          { address: "127.0.0.1", port: 0, mode: "mta", authWithoutTls: true },
          { address: "127.0.0.1", port: 0, mode: "submission" },
          { address: "127.0.0.1", port: 0, mode: "submissions" },
        ],
      },
    });
    const c = await session(server);
    await c.expect("MAIL FROM:<x@sender.example.net>", 250);
    await c.expect("RCPT TO:<john@example.org>", 250);
    await c.expect("DATA", 354);
    const data = await c.cmd(`${spoof}.`);
    assert.match(data.text, /^550 5\.7\.1 Error: message rejected by the DMARC policy of bank\.example\.com/);
    await c.expect("MAIL FROM:<x@sender.example.net>", 250);
    await c.expect("RCPT TO:<john@example.org>", 250);
    c.write(`BDAT ${Buffer.byteLength(spoof)} LAST\r\n${spoof}`);
    const bdat = await c.reply();
    assert.match(bdat.text, /^550 5\.7\.1 /);
    // The same message from a logged-in client on the same listener: accepted, not checked.
    await c.expect(`AUTH PLAIN ${Buffer.from(`\0${user.address}\0${user.password}`).toString("base64")}`, 235);
    await c.expect("MAIL FROM:<john@example.org>", 250);
    await c.expect("RCPT TO:<john@example.org>", 250);
    await c.expect("DATA", 354);
    const ok = await c.cmd(`${spoof}.`);
    assert.match(ok.text, /^250 /);
    await c.expect("QUIT", 221);
    await server.waitForLog((l) => l.event === "delivered" && l.to === "john@example.org");
    const got = await mailbox(server, "john");
    assert.equal(got.length, 1, "only the authenticated client's message was queued");
    assert.doesNotMatch(got[0]!, /^Authentication-Results:/m, "no checks for an authenticated client");
    const dmarcRefusal = (l: LogLine) => l.event === "data-refused" && /DMARC/.test(String(l.reason));
    let refusals = 0;
    await server.waitForLog((l) => dmarcRefusal(l) && ++refusals === 2);
    assert.equal(server.logs.filter(dmarcRefusal).length, 2);
  } finally {
    await server?.cleanup();
    await dns.close();
  }
});

test("a forged Authentication-Results: in our name is removed whole, a foreign one kept; ours on top", async () => {
  const dns = await startDnsServer(ZONE);
  let server: Postern | undefined;
  try {
    server = await startPostern({ users: [{ address: "john@example.org", password: "inbound-pass" }], config: { dns: { servers: [dns.address] } } });
    const body =
      "Authentication-Results: (forged) MAIL.example.ORG.;\r\n\tdkim=pass header.d=bank.example.com;\r\n\tdmarc=pass\r\n" +
      "Authentication-Results: mx.elsewhere.example; spf=pass smtp.mailfrom=a@sender.example.net\r\n" +
      "From: <a@sender.example.net>\r\nTo: <john@example.org>\r\nSubject: signed\r\n\r\nsigned body\r\n";
    const message = await signed(body, "sender.example.net", "s1", key);
    const c = await session(server);
    await c.expect("MAIL FROM:<a@sender.example.net>", 250);
    await c.expect("RCPT TO:<john@example.org>", 250);
    await c.expect("DATA", 354);
    assert.match((await c.cmd(`${message}.`)).text, /^250 /);
    await c.expect("QUIT", 221);
    await server.waitForLog((l) => l.event === "delivered" && l.to === "john@example.org");
    const [got] = await mailbox(server, "john");
    assert.ok(got);
    const ours = got.match(/^Authentication-Results: mail\.example\.org;(?:\r\n\t[^\r\n]*)*\r\n/gm) ?? [];
    assert.equal(ours.length, 1, got);
    assert.doesNotMatch(got, /\(forged\)|header\.d=bank\.example\.com|\tdmarc=pass\r\n/, "the forged field went whole, folded lines and all");
    assert.match(got, /\r\nAuthentication-Results: mx\.elsewhere\.example; spf=pass smtp\.mailfrom=a@sender\.example\.net\r\n/);
    // mailauth's signer does not sign Authentication-Results:, so the signature survives the removal.
    assert.match(ours[0]!, /\tspf=pass \([^)]*\) smtp\.mailfrom=a@sender\.example\.net;/);
    assert.match(ours[0]!, /\tdkim=pass header\.d=sender\.example\.net header\.s=s1 header\.a=rsa-sha256 header\.b=/);
    assert.match(ours[0]!, /\tdmarc=none header\.from=sender\.example\.net\r\n$/, "no DMARC record for sender.example.net");
    assert.ok(got.indexOf("Authentication-Results: mail.example.org") < got.indexOf("Received:"), "ours is on top of our Received:");
  } finally {
    await server?.cleanup();
    await dns.close();
  }
});

test("inbound.spfRejectFail: SPF fail refused at MAIL with 550 5.7.23, a passing sender accepted", async () => {
  const dns = await startDnsServer(ZONE);
  let server: Postern | undefined;
  try {
    server = await startPostern({ config: { dns: { servers: [dns.address] }, inbound: { spfRejectFail: true } } });
    const c = await session(server);
    const refused = await c.cmd("MAIL FROM:<a@forger.example.net>");
    assert.match(refused.text, /^550 5\.7\.23 <a@forger\.example\.net>: SPF validation failed: forger\.example\.net does not designate 127\.0\.0\.1/);
    await c.expect("MAIL FROM:<a@sender.example.net>", 250);
    await c.expect("QUIT", 221);
  } finally {
    await server?.cleanup();
    await dns.close();
  }
});
