/**
 * Production operation of a real `postern serve`: /metrics and /healthz on the admin listener,
 * SIGHUP swapping the certificate under a live session, SIGTERM draining in-flight transactions.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { parse, stringify } from "yaml";
import { runCli, startPostern, type Postern } from "../e2e/helpers/postern.js";
import { RawSmtp } from "../e2e/helpers/raw-smtp.js";
import { makeSelfSigned } from "../helpers/self-signed.js";

async function makeCert(dir: string, cn: string): Promise<void> {
  await makeSelfSigned({ cn, key: join(dir, "key.pem"), cert: join(dir, "cert.pem") });
}

/** The CN of the certificate a fresh STARTTLS handshake on `port` gets. */
async function starttlsCn(port: number): Promise<string> {
  const c = await RawSmtp.open(port);
  await c.reply();
  await c.expect("EHLO client.test", 250);
  await c.expect("STARTTLS", 220);
  const raw = (c as unknown as { socket: import("node:net").Socket }).socket;
  raw.removeAllListeners("data");
  const secure = tlsConnect({ socket: raw, rejectUnauthorized: false, servername: "localhost" });
  await new Promise<void>((ok, fail) => secure.once("secureConnect", () => ok()).once("error", fail));
  const cn = secure.getPeerCertificate().subject.CN as string;
  secure.destroy();
  return cn;
}

async function openTransaction(port: number): Promise<RawSmtp> {
  const c = await RawSmtp.open(port);
  await c.reply();
  await c.expect("EHLO client.test", 250);
  await c.expect("MAIL FROM:<sender@example.net>", 250);
  await c.expect("RCPT TO:<jane@example.org>", 250);
  return c;
}

describe("operating a running server", () => {
  let pg: Postern;
  let certDir: string;
  let admin: number;
  before(async () => {
    certDir = await mkdtemp(join(tmpdir(), "postern-certs-"));
    await makeCert(certDir, "first.example.org");
    pg = await startPostern({
      config: { admin: { port: 0 }, tls: { cert: join(certDir, "cert.pem"), key: join(certDir, "key.pem") }, process: { shutdownGraceMs: 20_000 } },
      users: [{ address: "jane@example.org", password: "jane's secret" }],
    });
    admin = (await pg.waitForLog((l) => l.event === "admin-listening")).port as number;
  });
  after(async () => {
    await pg.cleanup();
    await rm(certDir, { recursive: true, force: true });
  });

  it("/metrics counts connections, TLS versions, AUTH per mechanism and reason, refusals, queue and deliveries", async () => {
    const ok = await runCli(
      [
        "send",
        "--server",
        `127.0.0.1:${pg.ports.submission}`,
        "-k",
        "--user",
        "jane@example.org",
        "--password-stdin",
        "--auth",
        "PLAIN",
        "--from",
        "jane@example.org",
        "--to",
        "jane@example.org",
      ],
      "jane's secret\n",
    );
    assert.equal(ok.code, 0, ok.stdout);
    const bad = await runCli(
      [
        "send",
        "--server",
        `127.0.0.1:${pg.ports.submission}`,
        "-k",
        "--user",
        "jane@example.org",
        "--password-stdin",
        "--auth",
        "LOGIN",
        "--from",
        "jane@example.org",
        "--to",
        "jane@example.org",
      ],
      "wrong\n",
    );
    assert.equal(bad.code, 28);
    const relay = await runCli(["send", "--server", `127.0.0.1:${pg.ports.mta}`, "-k", "--from", "a@example.net", "--to", "b@example.com"]);
    assert.equal(relay.code, 24);
    await pg.waitForLog((l) => l.event === "delivered");

    const res = await fetch(`http://127.0.0.1:${admin}/metrics`);
    assert.equal(res.status, 200);
    const body = await res.text();
    const value = (re: RegExp) => Number(re.exec(body)?.[1] ?? NaN);
    assert.ok(value(/^postern_connections_total\{listener="submission"\} (\d+)/m) >= 2, body);
    assert.ok(value(/^postern_tls_sessions_total\{listener="submission",version="TLSv1\.[23]"\} (\d+)/m) >= 2);
    assert.equal(value(/^postern_auth_total\{mechanism="PLAIN",result="success",reason=""\} (\d+)/m), 1);
    assert.equal(value(/^postern_auth_total\{mechanism="LOGIN",result="failure",reason="bad-password"\} (\d+)/m), 1);
    assert.ok(value(/^postern_messages_refused_total\{stage="rcpt",reason="[^"]*"\} (\d+)/m) >= 1);
    assert.equal(value(/^postern_messages_accepted_total\{listener="submission"\} (\d+)/m), 1);
    assert.equal(value(/^postern_deliveries_total\{outcome="delivered"\} (\d+)/m), 1);
    assert.match(body, /^postern_queue_messages\{state="due"\} 0/m);
    assert.match(body, /^postern_sessions_open\{listener="mta"\} \d+$/m);
    assert.match(body, /^postern_process_resident_memory_bytes /m);

    const health = await fetch(`http://127.0.0.1:${admin}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(((await health.json()) as { status: string }).status, "ok");
    assert.equal((await fetch(`http://127.0.0.1:${admin}/other`)).status, 404);
  });

  it("SIGHUP loads the new certificate for new handshakes without dropping a session in flight", async () => {
    assert.equal(await starttlsCn(pg.ports.mta), "first.example.org");
    const live = await openTransaction(pg.ports.mta);
    await makeCert(certDir, "second.example.org");
    pg.kill("SIGHUP");
    const reload = await pg.waitForLog((l) => l.event === "reload");
    assert.equal(reload.ok, true);
    // Only what changed is reported: the certificate, not the limits nobody touched (issue 12).
    assert.deepEqual(reload.changed, ["tls"]);
    assert.deepEqual(reload.restartNeeded, []);
    assert.equal(await starttlsCn(pg.ports.mta), "second.example.org");
    await live.expect("DATA", 354);
    await live.expect("Subject: across a reload\r\n\r\nbody\r\n.", 250);
    await live.expect("QUIT", 221);
  });

  it("SIGHUP reports what it applied and names what needs a restart (issue 12)", async () => {
    const reloadAfter = (n: number) => pg.waitForLog((l) => l.event === "reload" && pg.logs.indexOf(l) >= n);
    const original = await readFile(pg.configPath, "utf8");
    const edited = parse(original) as { domains: string[]; limits: Record<string, unknown> };
    edited.domains = [...edited.domains, "example.net"];
    edited.limits = { ...edited.limits, recipients: 2 };
    await writeFile(pg.configPath, stringify(edited));
    try {
      let mark = pg.logs.length;
      pg.kill("SIGHUP");
      const first = await reloadAfter(mark);
      assert.equal(first.ok, true);
      assert.deepEqual(first.changed, ["limits.recipients"]);
      assert.deepEqual(first.restartNeeded, ["domains"]);
      assert.match(String(first.msg), /applied limits\.recipients; restart needed for domains \(not applied\)/);
      // "Applied" is true: a new session gets the new recipient limit.
      const c = await openTransaction(pg.ports.mta);
      await c.expect("RCPT TO:<jane+two@example.org>", 250);
      const third = await c.cmd("RCPT TO:<jane+three@example.org>");
      assert.equal(third.code, 452, third.text);
      await c.expect("QUIT", 221);

      // Nothing new: nothing applied, and the domain still waits for a restart.
      mark = pg.logs.length;
      pg.kill("SIGHUP");
      const second = await reloadAfter(mark);
      assert.deepEqual(second.changed, []);
      assert.deepEqual(second.restartNeeded, ["domains"]);
      assert.match(String(second.msg), /nothing to apply; restart needed for domains/);
    } finally {
      await writeFile(pg.configPath, original);
    }
  });

  it("SIGTERM: new connections refused, idle sessions get 421, a transaction in flight finishes", async () => {
    const idle = await RawSmtp.open(pg.ports.mta);
    await idle.reply();
    await idle.expect("EHLO idle.test", 250);
    const busy = await openTransaction(pg.ports.mta);
    const stopped = pg.stop("SIGTERM");
    const bye = await idle.reply();
    assert.equal(bye.code, 421);
    assert.match(bye.text, /4\.3\.2/);
    await idle.waitClosed();
    await pg.waitForLog((l) => l.event === "shutdown");
    await assert.rejects(
      new Promise<void>((ok, fail) => netConnect({ host: "127.0.0.1", port: pg.ports.mta }).once("connect", ok).once("error", fail)),
      /ECONNREFUSED/,
    );
    await busy.expect("DATA", 354);
    const done = await busy.expect("Subject: finished while draining\r\n\r\nbody\r\n.", 250);
    assert.match(done.text, /queued as/);
    // After the transaction the session ends on its own (421), and the process exits.
    assert.equal((await busy.reply()).code, 421);
    await stopped;
    assert.equal(pg.logs.find((l) => l.event === "stopped")?.cut, 0);
  });
});
