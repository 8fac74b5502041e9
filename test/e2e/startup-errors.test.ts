/**
 * Issue 12: every error that stops `postern serve` says what is wrong in words, names the setting
 * and the file it comes from, and suggests the fix. Real `postern serve` processes; each message
 * is asserted by its content.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer, type AddressInfo, type Server } from "node:net";
import { readFileSync } from "node:fs";
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { BIN } from "./helpers/postern.js";
import { RawSmtp } from "./helpers/raw-smtp.js";
import { serveOnce, type ServeResult } from "./helpers/serve-once.js";
import { baseTestConfig } from "../helpers/test-config.js";
import { makeSelfSigned } from "../helpers/self-signed.js";

/** An OpenSSL error code such as error:05800074 is not an explanation. */
const OPENSSL_CODE = /error:[0-9A-F]{8}/;

function assertRefused(r: ServeResult): void {
  assert.equal(r.timedOut, false, `the server started instead of refusing:\n${r.stdout}`);
  assert.notEqual(r.code, 0);
  assert.doesNotMatch(r.stderr, OPENSSL_CODE);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `no stack trace:\n${r.stderr}`);
}

async function listenAnywhere(): Promise<Server> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, "127.0.0.1", () => ok()));
  return s;
}

describe("startup errors name the setting, the file and the fix (issue 12)", () => {
  let dir: string;
  let blocker: Server;
  let busy: number;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-starterr-"));
    blocker = await listenAnywhere();
    busy = (blocker.address() as AddressInfo).port;
  });
  after(async () => {
    await new Promise((ok) => blocker.close(ok));
    await rm(dir, { recursive: true, force: true });
  });

  let n = 0;
  const configFile = async (extra: Record<string, unknown>) => {
    const name = `c${++n}`;
    const path = join(dir, `${name}.yaml`);
    await writeFile(path, stringify({ ...baseTestConfig(join(dir, name)), ...extra }));
    return path;
  };

  it("a port in use names the listener, its address and the key to change", async () => {
    const path = await configFile({
      listeners: [
        { address: "127.0.0.1", port: 0, mode: "mta" },
        { address: "127.0.0.1", port: busy, mode: "submission" },
      ],
    });
    const r = await serveOnce(["--config", path]);
    assertRefused(r);
    assert.match(r.stderr, new RegExp(`listener listeners\\[1\\] \\(submission\\) cannot listen on 127\\.0\\.0\\.1:${busy}: the address is already in use`));
    assert.ok(r.stderr.includes(`setting: listeners[1].port in ${path}`), r.stderr);
    assert.match(r.stderr, /fix: stop the program that holds .*ss -ltnp/);
  });

  it("the demo on a busy port says how to move its ports (--demo-ports)", async () => {
    const cwd = await mkdtemp(join(tmpdir(), "postern-demo-busy-"));
    try {
      const r = await serveOnce(["--demo-ports", String(busy)], { cwd });
      assertRefused(r);
      assert.match(r.stderr, new RegExp(`listener listeners\\[0\\] \\(mta\\) cannot listen on 127\\.0\\.0\\.1:${busy}: the address is already in use`));
      assert.match(r.stderr, /setting: listeners\[0\]\.port in the embedded demo configuration/);
      assert.match(r.stderr, /postern serve --demo-ports \d+/);
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  });

  it("--demo-ports BASE moves the demo to BASE, BASE+1, BASE+2", async () => {
    // Below the kernel's ephemeral range, so no other test's port-0 socket can take these.
    const [low] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    const base = 20_000 + ((process.pid * 7) % Math.max(1, low! - 20_010));
    const cwd = await mkdtemp(join(tmpdir(), "postern-demo-moved-"));
    const child = spawn(process.execPath, [BIN, "serve", "--demo-ports", String(base)], { cwd, stdio: ["ignore", "pipe", "pipe"] });
    try {
      let out = "";
      let err = "";
      child.stderr.on("data", (d: Buffer) => (err += d.toString()));
      await new Promise<void>((ok, fail) => {
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          if (out.includes("demo password")) ok();
        });
        child.once("exit", (code) => fail(new Error(`the demo exited (${code}): ${err}`)));
      });
      assert.match(out, new RegExp(`MTA +127\\.0\\.0\\.1:${base} `));
      assert.match(out, new RegExp(`submission +127\\.0\\.0\\.1:${base + 1} `));
      assert.match(out, new RegExp(`submissions +127\\.0\\.0\\.1:${base + 2} `));
      const c = await RawSmtp.open(base + 1);
      assert.equal((await c.reply()).code, 220);
      c.close();
    } finally {
      child.kill("SIGTERM");
      await new Promise((ok) => (child.exitCode !== null ? ok(null) : child.once("exit", ok)));
      await rm(cwd, { recursive: true, force: true });
    }
  });

  it("--demo-ports with a configuration file is refused with the reason", async () => {
    const path = await configFile({});
    const r = await serveOnce(["--config", path, "--demo-ports", "3525"]);
    assertRefused(r);
    assert.match(r.stderr, /--demo-ports moves the embedded demo's ports; with a configuration file .* set listeners\[\]\.port there/);
  });

  describe("TLS files", () => {
    let tls: string;
    before(async () => {
      tls = join(dir, "tls");
      await mkdir(tls);
      for (const name of ["a", "b"]) {
        await makeSelfSigned({ cn: `${name}.example.org`, key: join(tls, `${name}.key`), cert: join(tls, `${name}.crt`) });
      }
    });

    it("a key that does not belong to the certificate is called that, not an OpenSSL code", async () => {
      const path = await configFile({ tls: { cert: join(tls, "a.crt"), key: join(tls, "b.key") } });
      const r = await serveOnce(["--config", path]);
      assertRefused(r);
      assert.match(r.stderr, /tls\.key \(.*b\.key\) is not the private key of the certificate in tls\.cert \(.*a\.crt\): the two do not belong together/);
      assert.ok(r.stderr.includes(`setting: tls.key in ${path}`), r.stderr);
      assert.match(r.stderr, /fix: point tls\.key at the key the certificate was issued for/);
    });

    it("swapped certificate and key files are called swapped", async () => {
      const path = await configFile({ tls: { cert: join(tls, "a.key"), key: join(tls, "a.crt") } });
      const r = await serveOnce(["--config", path]);
      assertRefused(r);
      assert.match(
        r.stderr,
        /the certificate and key files are swapped: tls\.cert \(.*a\.key\) holds a private key and tls\.key \(.*a\.crt\) holds a certificate/,
      );
      assert.ok(r.stderr.includes(`setting: tls.cert, tls.key in ${path}`), r.stderr);
      assert.match(r.stderr, /fix: exchange the two paths/);
    });

    it("a missing certificate file is named", async () => {
      const path = await configFile({ tls: { cert: join(tls, "missing.crt"), key: join(tls, "a.key") } });
      const r = await serveOnce(["--config", path]);
      assertRefused(r);
      assert.match(r.stderr, /tls\.cert \(.*missing\.crt\) does not exist/);
      assert.ok(r.stderr.includes(`setting: tls.cert in ${path}`), r.stderr);
    });
  });

  it("an unknown process.user is named, with how to create it", async () => {
    const path = await configFile({ process: { user: "no-such-user-postern" } });
    const r = await serveOnce(["--config", path]);
    assertRefused(r);
    assert.match(r.stderr, /no such user: no-such-user-postern/);
    assert.ok(r.stderr.includes(`setting: process.user in ${path}`), r.stderr);
    assert.match(r.stderr, /fix: create the user \(useradd --system/);
  });

  describe("started without root", () => {
    const privileged = Number(readFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8").trim());
    const canTest = process.getuid?.() === 0 && privileged > 25;
    const nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    /** A config and data directory the unprivileged user can read and write. */
    const unprivilegedConfig = async (extra: Record<string, unknown>) => {
      const path = await configFile(extra);
      const data = join(dir, `c${n}`, "data");
      await mkdir(data, { recursive: true });
      await chown(join(dir, `c${n}`), 65534, 65534);
      await chown(data, 65534, 65534);
      await chmod(dir, 0o755);
      await chmod(path, 0o644);
      return path;
    };

    it("EACCES on port 25 suggests root with process.user, or CAP_NET_BIND_SERVICE", {
      skip: canTest ? false : `needs root and net.ipv4.ip_unprivileged_port_start > 25 (it is ${privileged})`,
    }, async () => {
      const path = await unprivilegedConfig({ listeners: [{ address: "127.0.0.1", port: 25, mode: "mta" }] });
      const r = await serveOnce(["--config", path], { wrapper: nobody, cwd: dir });
      assertRefused(r);
      assert.match(r.stderr, /listener listeners\[0\] \(mta\) cannot listen on 127\.0\.0\.1:25: permission denied; ports below 1024 are privileged/);
      assert.ok(r.stderr.includes(`setting: listeners[0].port in ${path}`), r.stderr);
      assert.match(r.stderr, /start postern as root with process\.user set/);
      assert.match(r.stderr, /CAP_NET_BIND_SERVICE/);
    });

    it("process.user without root says so before binding anything", { skip: canTest ? false : "needs root (to become another user)" }, async () => {
      const path = await unprivilegedConfig({ process: { user: "root" } });
      const r = await serveOnce(["--config", path], { wrapper: nobody, cwd: dir });
      assertRefused(r);
      assert.match(r.stderr, /process\.user is set to root, but postern was not started as root/);
      assert.ok(r.stderr.includes(`setting: process.user in ${path}`), r.stderr);
    });
  });
});
