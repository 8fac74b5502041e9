import { test } from "node:test";
import assert from "node:assert/strict";
import { createClientMechanism, createServerMechanism, SERVER_MECHANISMS } from "../../src/sasl/index.js";
import { findMechanism } from "../../src/sasl/registry.js";
import { MemoryVerifier, runExchange, serverOptions } from "./helpers.js";

const PASSWORD = "correct horse battery staple";
const users = () => new MemoryVerifier({ "tim@example.org": PASSWORD });
/** Both ends of one TLS 1.3 connection see the same tls-exporter data (SCRAM -PLUS binds to it; plain SCRAM says "n"). */
const binding = { channelBinding: () => Buffer.alloc(32, 7) };

test("SERVER_MECHANISMS in preference order", () => {
  assert.deepEqual([...SERVER_MECHANISMS], ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "OAUTHBEARER", "XOAUTH2", "CRAM-MD5", "PLAIN", "LOGIN", "DIGEST-MD5"]);
});

test("factories are case-insensitive, return null for unknown names, and a fresh object each call", () => {
  const opts = serverOptions(users());
  for (const name of SERVER_MECHANISMS) {
    assert.equal(createServerMechanism(name.toLowerCase(), opts)?.name, name);
    assert.equal(createClientMechanism(name.toLowerCase(), { username: "u", password: "p" })?.name, name);
    assert.notEqual(createServerMechanism(name, opts), createServerMechanism(name, opts));
  }
  for (const unknown of ["GSSAPI", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", ""]) {
    assert.equal(createServerMechanism(unknown, opts), null);
    assert.equal(createClientMechanism(unknown, { username: "u", password: "p" }), null);
  }
});

// Bearer-token mechanisms check tokens, not passwords: test/sasl/oauthbearer.test.ts.
for (const name of SERVER_MECHANISMS.filter((n) => findMechanism(n)?.needs !== "bearer-token")) {
  test(`${name}: success, then bad password / unknown user, and every object is single-use`, async () => {
    const run = (username: string, password: string) => {
      const server = createServerMechanism(name, serverOptions(users(), binding))!;
      return runExchange(server, createClientMechanism(name, { username, password }, name.endsWith("-PLUS") ? binding : {})!).then((step) => ({
        server,
        step,
      }));
    };
    const ok = await run("tim@example.org", PASSWORD);
    assert.deepEqual(ok.step, { kind: "success", identity: { authcid: "tim@example.org", authzid: "tim@example.org" } });

    const bad = await run("tim@example.org", "Tr0ub4dor&3");
    assert.deepEqual(bad.step, { kind: "failure", reason: "bad-password" });
    const unknown = await run("ghost@example.org", PASSWORD);
    assert.deepEqual(unknown.step, { kind: "failure", reason: "unknown-user" });

    for (const { server, step } of [ok, bad, unknown]) {
      assert.ok(!JSON.stringify(step).includes(PASSWORD), "no secret in a step");
      const after = await server.step(Buffer.alloc(0));
      assert.equal(after.kind === "failure" && after.reason, "malformed");
      const restart = await server.start(null);
      assert.equal(restart.kind === "failure" && restart.reason, "malformed");
    }
  });
}
