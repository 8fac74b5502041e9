/**
 * The web listener alone (src/web/listener.ts) over real HTTPS on loopback: apps in order, 404,
 * security headers, body limits, the request deadline, malformed requests, TLS versions, the log.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { connect } from "node:tls";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { readRequestBody, startWebServer, type WebServer } from "../../src/web/listener.js";
import type { WebApp } from "../../src/web/types.js";
import { makeTestCa, type TestCa } from "../helpers/test-ca.js";
import { httpsRequest } from "./helpers/autoconfig-client.js";

describe("web listener", () => {
  let dir: string;
  let ca: TestCa;
  let server: WebServer;
  const logLines: Record<string, unknown>[] = [];
  const seen: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-web-"));
    ca = await makeTestCa(join(dir, "ca"));
    const leaf = await ca.issue({ names: ["mail.example.org"] });
    const log = pino(
      { level: "debug" },
      new Writable({
        write(chunk: Buffer, _e, done) {
          for (const l of chunk.toString().split("\n")) if (l) logLines.push(JSON.parse(l) as Record<string, unknown>);
          done();
        },
      }),
    );
    const first: WebApp = {
      name: "first",
      async handle(r) {
        seen.push(`first ${r.url.pathname}`);
        if (r.url.pathname === "/a") {
          r.res.writeHead(200, { "content-type": "text/plain" }).end("from first");
          return true;
        }
        if (r.url.pathname === "/own-csp") {
          r.res.writeHead(200, { "content-security-policy": "default-src 'self'" }).end("ok");
          return true;
        }
        if (r.url.pathname === "/boom") throw new Error("app failure");
        if (r.url.pathname === "/echo-size") {
          const body = await readRequestBody(r.req);
          r.res.writeHead(200).end(String(body.length));
          return true;
        }
        if (r.url.pathname === "/hang") return new Promise<boolean>(() => undefined);
        return false;
      },
    };
    const second: WebApp = {
      name: "second",
      async handle(r) {
        seen.push(`second ${r.url.pathname}`);
        if (r.url.pathname !== "/b") return false;
        r.res.writeHead(200).end("from second");
        return true;
      },
    };
    server = await startWebServer(
      { address: "127.0.0.1", port: 0, tls: { cert: Buffer.from(leaf.certPem), key: Buffer.from(leaf.keyPem) }, maxBodyBytes: 1024, requestTimeoutMs: 1500 },
      [first, second],
      log,
    );
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  const get = (path: string, o: { method?: string; body?: string; headers?: Record<string, string> } = {}) =>
    httpsRequest(server.port, { path, ca: ca.certPem, ...o });

  it("passes requests to the apps in order; the first that answers ends it; none is a 404", async () => {
    seen.length = 0;
    assert.equal((await get("/a")).text, "from first");
    assert.deepEqual(seen, ["first /a"]);
    seen.length = 0;
    assert.equal((await get("/b?x=1")).text, "from second");
    assert.deepEqual(seen, ["first /b", "second /b"]);
    const none = await get("/nothing");
    assert.equal(none.status, 404);
    assert.equal(none.text, "not found\n");
  });

  it("puts the security headers on every answer, and keeps an app's own CSP", async () => {
    for (const path of ["/a", "/nothing"]) {
      const r = await get(path);
      assert.equal(r.headers["strict-transport-security"], "max-age=31536000");
      assert.equal(r.headers["x-content-type-options"], "nosniff");
      assert.equal(r.headers["referrer-policy"], "no-referrer");
      assert.match(String(r.headers["content-security-policy"]), /^default-src 'none'/);
    }
    assert.equal((await get("/own-csp")).headers["content-security-policy"], "default-src 'self'");
  });

  it("answers 500 for an app that throws, and keeps serving", async () => {
    const r = await get("/boom");
    assert.equal(r.status, 500);
    assert.doesNotMatch(r.text, /app failure/);
    assert.ok(logLines.some((l) => l.event === "web-app-error" && l.app === "first"));
    assert.equal((await get("/a")).status, 200);
  });

  it("bounds request bodies: a declared length past the limit, and a chunked body that grows past it", async () => {
    assert.equal((await get("/echo-size", { method: "POST", body: "x".repeat(1000) })).text, "1000");
    assert.equal((await get("/echo-size", { method: "POST", body: "x".repeat(1025) })).status, 413);
    const chunked = await get("/echo-size", { method: "POST", body: "x".repeat(5000), headers: { "transfer-encoding": "chunked" } });
    assert.equal(chunked.status, 413);
    assert.equal((await get("/a")).status, 200);
  });

  it("cuts a request that outlives its deadline", async () => {
    const started = Date.now();
    const r = await get("/hang");
    assert.equal(r.status, 503);
    assert.equal(r.text, "request timed out\n");
    assert.ok(Date.now() - started < 5000);
  });

  it("answers a malformed request with 400 and survives it", async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port: server.port, ca: ca.certPem, servername: "mail.example.org" }, () =>
        s.write("GARBAGE \x00\x01 nonsense\r\n\r\n"),
      );
      let text = "";
      s.on("data", (d: Buffer) => (text += d.toString("latin1")));
      s.on("end", () => resolve(text));
      s.on("close", () => resolve(text));
      s.on("error", reject);
    });
    assert.match(reply, /^HTTP\/1\.1 400/);
    const huge = await get("/a", { headers: { "x-big": "y".repeat(20_000) } });
    assert.equal(huge.status, 431);
    const absolute = await get("http://evil.test/a");
    assert.equal(absolute.status, 400);
    assert.equal((await get("/a")).status, 200);
  });

  it("speaks TLS 1.2 and 1.3 with the server's certificate, never older versions", async () => {
    const handshake = (o: { minVersion?: "TLSv1" | "TLSv1.2"; maxVersion: "TLSv1.1" | "TLSv1.2" | "TLSv1.3" }) =>
      new Promise<string>((resolve, reject) => {
        const s = connect({ host: "127.0.0.1", port: server.port, ca: ca.certPem, servername: "mail.example.org", ...o }, () => {
          const v = s.getProtocol() ?? "";
          s.end();
          resolve(v);
        });
        s.on("error", reject);
      });
    assert.equal(await handshake({ maxVersion: "TLSv1.2" }), "TLSv1.2");
    assert.equal(await handshake({ maxVersion: "TLSv1.3" }), "TLSv1.3");
    await assert.rejects(handshake({ minVersion: "TLSv1", maxVersion: "TLSv1.1" }));
  });

  it("logs one line per request: method, path without the query, status, time", async () => {
    await get("/a?emailaddress=secret@example.org");
    const line = [...logLines].reverse().find((l) => l.event === "web-request" && l.path === "/a");
    assert.ok(line);
    assert.equal(line.method, "GET");
    assert.equal(line.status, 200);
    assert.equal(typeof line.ms, "number");
    assert.ok(!JSON.stringify(logLines).includes("secret@example.org"));
  });
});
