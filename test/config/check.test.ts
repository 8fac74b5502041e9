/**
 * `postern config check` catches what used to pass it and fail later: certificate files, the
 * service user and what it can read and write after the privilege drop, open-relay networks,
 * typos in key names — and never prints a secret. Runs the real `postern` binary.
 */
import { describe, it, test } from "node:test";
import assert from "node:assert/strict";
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../e2e/helpers/postern.js";
import { closestKey, parseConfigText } from "../../src/config/load.js";
import { configWarnings, netBreadth } from "../../src/config/risks.js";
import { auditService, auditTls, maildirRoot } from "../../src/cli/config-audit.js";
import { makeSelfSigned } from "../helpers/self-signed.js";

async function makePair(dir: string, name: string, days = 30): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await makeSelfSigned({ cn: name, cert, key, days });
  return { cert, key };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "postern-cfgcheck-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function yaml(dir: string, extra = ""): string {
  return `hostname: mail.example.org
dataDir: ${join(dir, "data")}
domains: [example.org]
listeners:
  - { address: 127.0.0.1, port: 2525, mode: mta }
delivery: { maildir: "${join(dir, "data/mail/{domain}/{localpart}")}" }
${extra}`;
}

async function check(dir: string, extra: string, name = "postern.yaml"): Promise<{ code: number; stdout: string; stderr: string; path: string }> {
  const path = join(dir, name);
  await writeFile(path, yaml(dir, extra));
  return { ...(await runCli(["config", "check", "--config", path])), path };
}

test("a valid configuration passes: exit 0, no findings", async () => {
  await withDir(async (dir) => {
    const r = await check(dir, 'mynetworks: [192.0.2.0/24, 10.0.0.0/8, "2001:db8::/56"]\n');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /config check: 0 errors, 0 warnings/);
  });
});

test("a missing certificate file and a key that is not the certificate's are errors; a certificate about to expire warns", async () => {
  await withDir(async (dir) => {
    const a = await makePair(dir, "a.example.org");
    const b = await makePair(dir, "b.example.org");
    const soon = await makePair(dir, "soon.example.org", 1);
    const tlsOf = (cert: string, key: string) => auditTls(parseConfigText(yaml(dir, `tls: { cert: ${cert}, key: ${key} }\n`)));

    assert.deepEqual(tlsOf(join(dir, "nope.crt"), a.key), [{ level: "error", key: "tls.cert", message: `${join(dir, "nope.crt")} does not exist` }]);
    assert.deepEqual(tlsOf(a.cert, a.key), []);
    const [warning, ...rest] = tlsOf(soon.cert, soon.key);
    assert.equal(rest.length, 0);
    assert.equal(warning?.level, "warning");
    assert.match(warning!.message, /soon\.example\.org\.crt expires in 0 days/);

    // The command: exit 78, the finding with the file's name.
    const mismatch = await check(dir, `tls: { cert: ${a.cert}, key: ${b.key} }\n`);
    assert.equal(mismatch.code, 78, mismatch.stderr);
    assert.ok(
      mismatch.stderr.includes(`postern.yaml: error: tls.key: ${b.key} does not belong to the certificate ${a.cert} (CN=a.example.org)`),
      mismatch.stderr,
    );
  });
});

test("a process.user or process.group that does not exist is an error", async () => {
  await withDir(async (dir) => {
    const user = await check(dir, "process: { user: no-such-postern-user }\n");
    assert.equal(user.code, 78);
    assert.match(user.stderr, /error: process\.user: no such user: no-such-postern-user \(create it, e\.g\. adduser --system --group no-such-postern-user\)/);
    const group = auditService(parseConfigText(yaml(dir, "process: { user: nobody, group: no-such-postern-group }\n")), undefined);
    assert.deepEqual(group, [{ level: "error", key: "process.group", message: "no such group: no-such-postern-group" }]);
  });
});

if (process.getuid?.() === 0) {
  describe("as the service user (root drops to process.user, as the server does)", () => {
    it("a config and a key it cannot read (SIGHUP would fail) and a Maildir root it cannot write are errors; group access counts", async () => {
      await withDir(async (dir) => {
        await chmod(dir, 0o755);
        const pair = await makePair(dir, "mail.example.org");
        await chmod(pair.key, 0o600); // root's only: the renewed key the server must re-read
        await chmod(pair.cert, 0o644);
        const mail = join(dir, "mail");
        await mkdir(mail, { mode: 0o755 }); // root's: nobody cannot create mailboxes in it
        const extra = `process: { user: nobody }\ntls: { cert: ${pair.cert}, key: ${pair.key} }\ndelivery: { maildir: "${mail}/{domain}/{localpart}" }\n`;
        const path = join(dir, "postern.yaml");
        await writeFile(path, yaml(dir, "").replace(/delivery:.*\n/, "") + extra, { mode: 0o600 });
        const r = await runCli(["config", "check", "--config", path]);
        assert.equal(r.code, 78, r.stderr);
        assert.ok(
          r.stderr.includes(`error: (config file): user nobody cannot read ${path}: SIGHUP reload (e.g. after a certificate renewal) will fail`),
          r.stderr,
        );
        assert.ok(r.stderr.includes(`error: tls.key: user nobody cannot read ${pair.key}: SIGHUP reload`), r.stderr);
        assert.ok(r.stderr.includes(`error: delivery.maildir: user nobody cannot create files in ${mail}: local delivery will fail`), r.stderr);
        assert.doesNotMatch(r.stderr, /tls\.cert: user nobody/, "the world-readable certificate is fine");

        // The usual fixes: the key readable by the service user's group, the config too, the Maildir root its own.
        await chown(pair.key, 0, 65534); // nogroup: nobody's primary group
        await chmod(pair.key, 0o640);
        await chown(path, 0, 65534);
        await chmod(path, 0o640);
        await chown(mail, 65534, 65534);
        const fixed = await runCli(["config", "check", "--config", path]);
        assert.equal(fixed.code, 0, fixed.stderr);
        assert.match(fixed.stderr, /0 errors/);
      });
    });

    it("a Maildir root that does not exist yet must be creatable", async () => {
      await withDir(async (dir) => {
        await chmod(dir, 0o755);
        const path = join(dir, "p2.yaml");
        await writeFile(
          path,
          yaml(dir).replace(/delivery:.*\n/, `delivery: { maildir: "${dir}/vmail/{domain}/{localpart}" }\n`) + "process: { user: nobody }\n",
          { mode: 0o644 },
        );
        const found = auditService(parseConfigText(await readFile(path, "utf8"), path), path);
        assert.deepEqual(found, [
          {
            level: "error",
            key: "delivery.maildir",
            message: `user nobody cannot create files in ${dir}: local delivery will fail and mail stays deferred (so it cannot create ${dir}/vmail)`,
          },
        ]);
      });
    });
  });
}

test("mynetworks covering the Internet is an open relay (error); a very wide public net is a warning", async () => {
  await withDir(async (dir) => {
    const open = ["0.0.0.0/0", "::/0", "::ffff:0:0/96", "0.0.0.0/1", "2000::/3"];
    const r = await check(dir, `mynetworks: [${[...open, "192.0.2.0/24", "8.0.0.0/12", "10.0.0.0/8"].map((n) => `"${n}"`).join(", ")}]\n`);
    assert.equal(r.code, 78, r.stderr);
    for (const [i, net] of open.entries())
      assert.ok(r.stderr.includes(`error: mynetworks.${i}: ${net} makes this server an open relay`), `${net}: ${r.stderr}`);
    assert.ok(r.stderr.includes("warning: mynetworks.6: 8.0.0.0/12 is a very wide public network"), r.stderr);
    assert.match(r.stderr, /5 errors, 1 warning\n/);
    // A wide net alone only warns: exit 0.
    const warned = configWarnings(parseConfigText(yaml(dir, `mynetworks: ["8.0.0.0/12"]\n`)));
    assert.deepEqual(
      warned.map((f) => [f.level, f.key]),
      [["warning", "mynetworks.0"]],
    );
  });
});

test("a trusted proxy range covering the Internet lets anyone claim a mynetworks address", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "postern.yaml");
    await writeFile(path, yaml(dir).replace("mode: mta }", "mode: mta, proxyProtocol: true }") + `trustedProxies: ["0.0.0.0/0"]\n`);
    const r = await runCli(["config", "check", "--config", path]);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /error: trustedProxies\.0: 0\.0\.0\.0\/0: any host in it may send a PROXY header and claim any client address/);
  });
});

test("no secret is printed: the smarthost password is redacted, a YAML error on its line shows no excerpt", async () => {
  await withDir(async (dir) => {
    const ok = await check(dir, `relay: { smarthost: { host: smtp.example.net, port: 587, auth: { username: relay-user, password: "s3cret-Relay-Pw" } } }\n`);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /password: <redacted>/);
    assert.match(ok.stdout, /username: relay-user/);
    assert.doesNotMatch(ok.stdout + ok.stderr, /s3cret-Relay-Pw/);

    const broken = await check(dir, `relay:\n  smarthost: { host: smtp.example.net, auth: { username: u, password: "s3cret-Relay-Pw } }\n`);
    assert.equal(broken.code, 78);
    assert.match(broken.stderr, /postern\.yaml:\d+:\d+: /, "the error still has its line");
    assert.doesNotMatch(broken.stdout + broken.stderr, /s3cret-Relay-Pw/);
  });
});

test("an unknown key suggests the closest valid one, with the file and the key's own line", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "mail.yaml");
    await writeFile(path, yaml(dir).replace("domains:", "domian: [typo.example]\ndomains:") + "limits: { recipents: 5 }\nrelayhost: smtp.example.net\n");
    const r = await runCli(["config", "check", "--config", path]);
    assert.equal(r.code, 78);
    assert.ok(r.stderr.includes(`${path}:3:1: domian: unknown key \`domian\` — did you mean \`domains\`?`), r.stderr);
    assert.match(r.stderr, /mail\.yaml:\d+:\d+: limits\.recipents: unknown key `recipents` — did you mean `recipients`\?/);
    assert.match(r.stderr, /mail\.yaml:\d+:1: relayhost: unknown key `relayhost` — did you mean `relay`\?/);
  });
  assert.equal(closestKey("hostnme", ["hostname", "domains"]), "hostname");
  assert.equal(closestKey("zzzzzz", ["hostname", "domains"]), undefined, "no wild guesses");
});

test("netBreadth and maildirRoot", () => {
  assert.equal(netBreadth("0.0.0.0/0"), "all");
  assert.equal(netBreadth("::/0"), "all");
  assert.equal(netBreadth("::ffff:0.0.0.0/96"), "all");
  assert.equal(netBreadth("10.0.0.0/8"), "ok");
  assert.equal(netBreadth("fd00::/8"), "ok");
  assert.equal(netBreadth("4.0.0.0/6"), "huge");
  assert.equal(netBreadth("8.0.0.0/12"), "wide");
  assert.equal(netBreadth("::ffff:8.0.0.0/108"), "wide");
  assert.equal(netBreadth("2001:db8::/32"), "wide");
  assert.equal(netBreadth("2001:db8::/48"), "ok");
  assert.equal(netBreadth("203.0.113.7"), "ok");
  assert.equal(maildirRoot("/var/mail/{domain}/{localpart}"), "/var/mail");
  assert.equal(maildirRoot("/srv/vmail-{domain}/{localpart}"), "/srv");
});
