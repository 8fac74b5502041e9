/**
 * Issue 11 item 10: a TLS 1.2 client may not renegotiate (each renegotiation is a full handshake
 * the server pays for, CVE-2011-1473). Checked with real `openssl s_client -tls1_2` and its "R"
 * command on every TLS socket Postern builds: implicit TLS (465), STARTTLS on 587 and 25, and
 * implicit TLS behind a PROXY protocol header.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startTestServer, type TestServer } from "./helpers.js";
import { proxyRelay, renegotiate, type Target } from "./tls-openssl.js";

let server: TestServer;
let relay: Awaited<ReturnType<typeof proxyRelay>>;
const at = (i: number) => server.server.listeners[i]!.port;

before(async () => {
  server = await startTestServer({
    trustedProxies: ["127.0.0.1/32"],
    listeners: [
      { address: "127.0.0.1", port: 0, mode: "mta" },
      { address: "127.0.0.1", port: 0, mode: "submission" },
      { address: "127.0.0.1", port: 0, mode: "submissions" },
      { address: "127.0.0.1", port: 0, mode: "submissions", proxyProtocol: true },
    ],
  });
  relay = await proxyRelay(at(3));
});
after(async () => {
  await relay?.close();
  await server?.stop();
});

function assertRefused(r: { answeredAfter: boolean; output: string }) {
  assert.match(r.output, /no renegotiation/, "the server answers the renegotiation ClientHello with a no_renegotiation alert");
  assert.equal(r.answeredAfter, false, "no command is answered on a renegotiated session");
}

const cases: [string, () => Target][] = [
  ["implicit TLS (465)", () => ({ port: at(2) })],
  ["STARTTLS on submission (587)", () => ({ port: at(1), starttls: true })],
  ["STARTTLS on mta (25)", () => ({ port: at(0), starttls: true })],
  ["implicit TLS behind a PROXY header", () => ({ port: relay.port })],
];

for (const [name, target] of cases) {
  test(`TLS 1.2 client-initiated renegotiation is refused: ${name}`, async () => {
    assertRefused(await renegotiate(target()));
  });
}

test("the proxied session above was the relay's client, and the server logged no internal error", async () => {
  await server.waitForLog((l) => l.event === "connect" && l.client === "192.0.2.7");
  assert.deepEqual(
    server.logs.filter((l) => l.event === "internal-error"),
    [],
  );
});
