/**
 * The open-relay probe goes where an attacker would (issue 11 item 12): in clear, after
 * STARTTLS, and over implicit TLS on the submissions port. A relay found on any of them is a FAIL
 * (exit 2) that names the path; a server that relays nowhere passes (exit 0). The servers
 * audited here are small real SMTP servers (test/check/smtp-double.ts).
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { runCli } from "../e2e/helpers/postern.js";
import { startDouble, type SmtpDouble } from "./smtp-double.js";

interface Item {
  id: string;
  verdict: string;
  reason: string;
  fix?: string;
}

async function check(port: number, extra: string[] = []): Promise<{ code: number; items: Item[] }> {
  const args = ["check", `127.0.0.1:${port}`, "--json", "--mode", "mta", "--domain", "example.org", "--servername", "localhost", "--timeout", "5", ...extra];
  const r = await runCli(args);
  assert.ok(r.stdout.startsWith("{"), `no JSON report: ${r.stdout}${r.stderr}`);
  return { code: r.code, items: (JSON.parse(r.stdout) as { items: Item[] }).items };
}

const find = (items: Item[], id: string): Item => {
  const i = items.find((x) => x.id === id);
  assert.ok(i, `no item ${id}; items: ${items.map((x) => x.id).join(", ")}`);
  return i;
};
const relayItems = (items: Item[], path: string) => items.filter((i) => i.id.startsWith(`open-relay (${path}): `));
const fails = (items: Item[]) => items.filter((i) => i.verdict === "FAIL").map((i) => `${i.id}: ${i.reason}`);

describe("postern check: open relays on every path", () => {
  const doubles: SmtpDouble[] = [];
  const start = async (...args: Parameters<typeof startDouble>) => {
    const d = await startDouble(...args);
    doubles.push(d);
    return d;
  };
  after(async () => {
    for (const d of doubles) await d.close();
  });

  it("a server that says 530 to MAIL in clear but relays after STARTTLS is a FAIL on the STARTTLS path, exit 2", async () => {
    const d = await start({ tlsBeforeMail: true, relays: (_a, secure) => secure });
    const { code, items } = await check(d.port);
    // Before the fix: every probe ran in clear, got the 530 and said PASS; exit 0.
    assert.equal(code, 2, JSON.stringify(items.filter((i) => i.id.startsWith("open-relay"))));
    for (const i of relayItems(items, "clear")) assert.equal(i.verdict, "PASS", `${i.id}: ${i.reason}`);
    assert.match(
      relayItems(items, "clear")
        .map((i) => i.reason)
        .join("\n"),
      /530/,
    );
    for (const label of ["plain foreign recipient", "percent hack", "bang path", "null sender to a foreign recipient", "local sender to a foreign recipient"]) {
      const i = find(items, `open-relay (STARTTLS): ${label}`);
      assert.equal(i.verdict, "FAIL", `${i.id}: ${i.reason}`);
      assert.match(i.reason, /after STARTTLS/);
      assert.match(i.fix!, /reject_unauth_destination/);
    }
  });

  it("STARTTLS is tried even when EHLO hides it: a relay behind a hidden STARTTLS is a FAIL", async () => {
    const d = await start({ hideStarttls: true, tlsBeforeMail: true, relays: (_a, secure) => secure });
    const { code, items } = await check(d.port);
    const i = find(items, "open-relay (STARTTLS): plain foreign recipient");
    assert.equal(i.verdict, "FAIL", i.reason);
    assert.equal(code, 2);
  });

  it("a classic open relay is a FAIL in clear and after STARTTLS, exit 2; accepting the RCPT is the failure, whatever DATA would say", async () => {
    // This double would refuse every message at the end of DATA: the check never gets that far
    // and still reports the relay, as Postfix's reject_unauth_destination and the relay testers do.
    const d = await start({ relays: () => true });
    const { code, items } = await check(d.port);
    for (const path of ["clear", "STARTTLS"]) {
      const i = find(items, `open-relay (${path}): plain foreign recipient`);
      assert.equal(i.verdict, "FAIL", `${i.id}: ${i.reason}`);
      assert.match(i.reason, path === "clear" ? /in clear/ : /after STARTTLS/);
      assert.match(i.reason, /DATA/);
    }
    assert.equal(code, 2);
  });

  it("a correct server passes every trick on both paths and exits 0; every trick reached it in clear and after STARTTLS", async () => {
    const d = await start({ relays: () => false });
    const { code, items } = await check(d.port);
    assert.deepEqual(fails(items), []);
    const clear = relayItems(items, "clear");
    const tls = relayItems(items, "STARTTLS");
    assert.ok(clear.length >= 10, `only ${clear.length} relay probes in clear`);
    assert.deepEqual(
      tls.map((i) => i.id.replace("(STARTTLS)", "")),
      clear.map((i) => i.id.replace("(clear)", "")),
    );
    for (const i of [...clear, ...tls]) assert.equal(i.verdict, "PASS", `${i.id}: ${i.reason}`);
    // The server saw the same recipients on both paths (those its parser let through to RCPT).
    const seen = (secure: boolean) => [...new Set(d.rcpts.filter((r) => r.secure === secure).map((r) => r.address))].sort();
    assert.ok(
      seen(false).some((a) => a.includes("%")),
      `no percent hack seen: ${seen(false).join(" ")}`,
    );
    assert.ok(
      seen(false).some((a) => a.includes("!")),
      `no bang path seen: ${seen(false).join(" ")}`,
    );
    assert.deepEqual(seen(true), seen(false));
    assert.equal(code, 0);
  });

  it("a server that relays only the percent hack, and only after STARTTLS, is caught by that trick on that path", async () => {
    const d = await start({ relays: (a, secure) => secure && a.includes("%") });
    const { code, items } = await check(d.port);
    assert.equal(find(items, "open-relay (STARTTLS): percent hack").verdict, "FAIL");
    assert.equal(find(items, "open-relay (clear): percent hack").verdict, "PASS");
    assert.equal(find(items, "open-relay (STARTTLS): plain foreign recipient").verdict, "PASS");
    assert.equal(code, 2);
  });

  it("an open relay on the implicit-TLS submissions port is a FAIL when that port is checked too", async () => {
    const mta = await start({ relays: () => false });
    const submissions = await start({ implicit: true, relays: () => true });
    const { code, items } = await check(mta.port, ["--submissions-port", String(submissions.port)]);
    assert.equal(code, 2, JSON.stringify(items.filter((i) => i.id.startsWith("open-relay"))));
    for (const path of ["clear", "STARTTLS"]) for (const i of relayItems(items, path)) assert.equal(i.verdict, "PASS", `${i.id}: ${i.reason}`);
    const i = find(items, "open-relay (implicit TLS): plain foreign recipient");
    assert.equal(i.verdict, "FAIL");
    assert.match(i.reason, new RegExp(`implicit TLS on port ${submissions.port}`));
  });
});
