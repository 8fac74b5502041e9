/**
 * `postern send` and `postern auth-string` against a real Postern: every mechanism on STARTTLS
 * and implicit TLS, masked transcripts, and the exit code of each failing stage.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BIN, ROOT, runCli, startPostern, type Postern } from "../e2e/helpers/postern.js";
import { RawSmtp } from "../e2e/helpers/raw-smtp.js";

const USER = { address: "john@example.org", password: "correct horse battery" };

/** Runs the CLI with extra environment (the password comes from POSTERN_PASSWORD). */
function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin?.end();
  });
}

async function maildirFiles(pg: Postern, local: string): Promise<string[]> {
  const dir = join(pg.dir, "mail/example.org", local, "new");
  return (await readdir(dir).catch(() => [])).map((f) => join(dir, f));
}

describe("postern send", () => {
  let pg: Postern;
  before(async () => {
    pg = await startPostern({ users: [USER, { address: "jane@example.org", password: "x" }, { address: "attach@example.org", password: "x" }] });
  });
  after(() => pg.cleanup());

  const base = () => ["send", "--from", USER.address, "--to", "jane@example.org", "--user", USER.address, "--insecure", "--ehlo", "client.test"];

  for (const mech of ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "auto"]) {
    for (const tls of ["starttls", "implicit"] as const) {
      it(`authenticates with ${mech} over ${tls} and the message is delivered`, async () => {
        const port = tls === "implicit" ? pg.ports.submissions : pg.ports.submission;
        const subject = `mech ${mech} ${tls}`;
        const r = await run([...base(), "--server", `127.0.0.1:${port}`, "--tls", tls, "--auth", mech, "--subject", subject], {
          POSTERN_PASSWORD: USER.password,
        });
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /<- 235 2\.7\.0/);
        assert.match(r.stdout, /-> AUTH [A-Z0-9-]+( <credentials>)?$/m);
        assert.doesNotMatch(r.stdout, new RegExp(Buffer.from(`\0${USER.address}\0${USER.password}`).toString("base64")));
        assert.doesNotMatch(r.stdout, /correct horse/);
        const line = await pg.waitForLog((l) => l.event === "auth-success" && (mech === "auto" || l.mechanism === mech) && !seen.has(l));
        seen.add(line);
        await pg.waitForLog((l) => l.event === "maildir-stored" && l.to === "jane@example.org" && !stored.has(l)).then((l) => stored.add(l));
      });
    }
  }
  const seen = new Set<object>();
  const stored = new Set<object>();

  it("--show-secrets shows the AUTH PLAIN string the server received", async () => {
    const r = await run([...base(), "--server", `127.0.0.1:${pg.ports.submission}`, "--auth", "PLAIN", "--show-secrets"], { POSTERN_PASSWORD: USER.password });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`-> AUTH PLAIN ${Buffer.from(`\0${USER.address}\0${USER.password}`).toString("base64")}`));
  });

  it("builds a multipart message with an attachment and extra headers", async () => {
    const file = join(pg.dir, "report.txt");
    await writeFile(file, "attached bytes\n");
    const r = await run(
      [
        ...base(),
        "--server",
        `127.0.0.1:${pg.ports.submission}`,
        "--to",
        "attach@example.org",
        "--header",
        "X-Test: yes",
        "--body",
        "see attachment",
        "--attach",
        file,
      ],
      { POSTERN_PASSWORD: USER.password },
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    await pg.waitForLog((l) => l.event === "maildir-stored" && l.to === "attach@example.org");
    const [msg] = await maildirFiles(pg, "attach");
    const text = await readFile(msg!, "utf8");
    assert.match(text, /^X-Test: yes\r$/m);
    assert.match(text, /Content-Type: multipart\/mixed; boundary="(=_postern_[0-9a-f]+)"/);
    assert.match(text, /Content-Disposition: attachment; filename="report.txt"/);
    assert.match(text, new RegExp(Buffer.from("attached bytes\n").toString("base64")));
  });

  it("exit codes: 28 wrong password, 24 recipient refused, 29 untrusted certificate, 2 nothing listening", async () => {
    const auth = await run([...base(), "--server", `127.0.0.1:${pg.ports.submission}`], { POSTERN_PASSWORD: "wrong" });
    assert.equal(auth.code, 28, auth.stdout);
    assert.match(auth.stdout, /535 5\.7\.8/);

    const rcpt = await run(["send", "--server", `127.0.0.1:${pg.ports.mta}`, "--insecure", "--from", "x@example.net", "--to", "y@example.com"]);
    assert.equal(rcpt.code, 24, rcpt.stdout);
    assert.match(rcpt.stdout, /554 5\.7\.1/);

    const tls = await run(["send", "--server", `127.0.0.1:${pg.ports.submission}`, "--from", USER.address, "--to", "jane@example.org"]);
    assert.equal(tls.code, 29, tls.stdout);

    const probe = await RawSmtp.open(pg.ports.mta); // a port that was just in use and is now free
    probe.close();
    const none = await run(["send", "--server", "127.0.0.1:1", "--tls", "none", "--from", "a@example.org", "--to", "b@example.org"]);
    assert.equal(none.code, 2, none.stdout);
  });

  it("MAIL refused without AUTH on submission gives exit 23", async () => {
    const r = await run(["send", "--server", `127.0.0.1:${pg.ports.submission}`, "--insecure", "--from", USER.address, "--to", "jane@example.org"]);
    assert.equal(r.code, 23, r.stdout);
    assert.match(r.stdout, /530 5\.7\.0/);
  });
});

describe("postern auth-string", () => {
  let pg: Postern;
  before(async () => {
    pg = await startPostern({ users: [USER] });
  });
  after(() => pg.cleanup());

  it("prints strings the server accepts, from a password on stdin", async () => {
    const r = await runCli(["auth-string", USER.address, "--password-stdin"], USER.password + "\n");
    assert.equal(r.code, 0, r.stderr);
    const plain = /^AUTH PLAIN (\S+)$/m.exec(r.stdout)![1]!;
    const [, loginUser, loginPass] = r.stdout.trim().split("\n").slice(1);
    const c = await RawSmtp.open(pg.ports.submissions, { tls: true });
    await c.reply();
    await c.expect("EHLO client.test", 250);
    await c.expect(`AUTH PLAIN ${plain}`, 235);
    c.close();
    const l = await RawSmtp.open(pg.ports.submissions, { tls: true });
    await l.reply();
    await l.expect("EHLO client.test", 250);
    await l.expect("AUTH LOGIN", 334);
    await l.expect(loginUser!, 334);
    await l.expect(loginPass!, 235);
    l.close();
  });

  it("--authzid goes first; --decode shows the NULs", async () => {
    const r = await runCli(["auth-string", USER.address, "--password-stdin", "--authzid", "boss@example.org"], "pw\n");
    const plain = /^AUTH PLAIN (\S+)$/m.exec(r.stdout)![1]!;
    const d = await runCli(["auth-string", "--decode", plain]);
    assert.equal(d.code, 0);
    assert.match(d.stdout, /^decoded: boss@example\.org\\0john@example\.org\\0pw$/m);
    assert.match(d.stdout, /authzid="boss@example.org" authcid="john@example.org" password="pw"/);
    const bad = await runCli(["auth-string", "--decode", "AGpv!"]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /not valid base64/);
  });
});

/** A private CA and a certificate it signed for mail.example.org (chain not in any trust store). */
async function privateCa(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const sh = (args: string[]) => new Promise<void>((ok, fail) => execFile("openssl", args, { cwd: dir }, (err) => (err ? fail(err) : ok())));
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await sh(["req", "-x509", ...ec, "-subj", "/CN=Test Private CA", "-days", "2", "-keyout", "ca.key", "-out", "ca.pem"]);
  await sh(["req", ...ec, "-subj", "/CN=mail.example.org", "-keyout", "mail.key", "-out", "mail.csr"]);
  await writeFile(join(dir, "ext.cnf"), "subjectAltName=DNS:mail.example.org\n");
  await sh([
    "x509",
    "-req",
    "-in",
    "mail.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
    "-out",
    "mail.pem",
  ]);
  return { ca: join(dir, "ca.pem"), cert: join(dir, "mail.pem"), key: join(dir, "mail.key") };
}

describe("postern send: certificate failures and missing passwords", () => {
  let pg: Postern;
  let ca: string;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-send-ca-"));
    const pki = await privateCa(dir);
    ca = pki.ca;
    pg = await startPostern({ config: { tls: { cert: pki.cert, key: pki.key } }, users: [USER, { address: "jane@example.org", password: "x" }] });
  });
  after(async () => {
    await pg?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  const send = (port: number, extra: string[], env: Record<string, string> = { POSTERN_PASSWORD: USER.password }) =>
    run(["send", "--server", `127.0.0.1:${port}`, "--from", USER.address, "--to", "jane@example.org", "--user", USER.address, ...extra], env);

  it("a certificate from an untrusted CA exits 29 (STARTTLS and implicit) and suggests --ca, --servername or -k", async () => {
    for (const [port, tls] of [
      [pg.ports.submission, "starttls"],
      [pg.ports.submissions, "implicit"],
    ] as const) {
      const r = await send(port, ["--tls", tls]);
      assert.equal(r.code, 29, r.stdout);
      assert.match(r.stdout, /\*\*\* TLS failed: unable to verify the first certificate \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/);
      assert.match(r.stdout, /--ca FILE to trust its \(private\) CA, --servername NAME if it is issued to another name, or -k to skip the check/);
    }
  });

  it("a certificate for another name exits 29 and suggests --servername; with it (and --ca) the message goes", async () => {
    const r = await send(pg.ports.submission, ["--ca", ca]);
    assert.equal(r.code, 29, r.stdout);
    assert.match(r.stdout, /ERR_TLS_CERT_ALTNAME_INVALID/);
    assert.match(r.stdout, /the certificate does not name the host you connected to: give the name it carries with --servername NAME/);
    const ok = await send(pg.ports.submission, ["--ca", ca, "--servername", "mail.example.org"]);
    assert.equal(ok.code, 0, ok.stdout);
  });

  it("with no terminal and no password it refuses instead of sending an empty one", async () => {
    const failuresBefore = pg.logs.filter((l) => l.event === "auth-failure").length;
    const r = await send(pg.ports.submission, ["--ca", ca, "--servername", "mail.example.org"], {});
    assert.equal(r.code, 1, r.stdout);
    assert.match(
      r.stdout,
      /\*\*\* --user john@example\.org: no password \(no terminal to prompt on, and stdin was empty\); set \$POSTERN_PASSWORD or pipe it with --password-stdin/,
    );
    assert.doesNotMatch(r.stdout, /AUTH/, "nothing was sent");
    // A barrier: a message that does go, also to an address no other test here mails. Lines arrive in order, so an
    // AUTH failure the refused run caused would be in the log by the time this message's line is.
    const barrier = await send(pg.ports.submission, ["--ca", ca, "--servername", "mail.example.org", "--to", USER.address]);
    assert.equal(barrier.code, 0, barrier.stdout);
    await pg.waitForLog((l) => l.event === "maildir-stored" && l.to === USER.address);
    assert.equal(pg.logs.filter((l) => l.event === "auth-failure").length, failuresBefore);
  });
});
