/**
 * The mechanism registry (src/sasl/registry.ts): one descriptor per mechanism, what each needs
 * from the store, and the offered lists derived from the credential kinds a store declares.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { findMechanism, mechanismRank, mechanismsFor, MECHANISMS } from "../../src/sasl/registry.js";
import { createClientMechanism, createServerMechanism, SERVER_MECHANISMS } from "../../src/sasl/index.js";
import { missingSecretReason } from "../../src/sasl/server-support.js";
import { MemoryVerifier, serverOptions } from "./helpers.js";

test("one descriptor per mechanism, strongest first; names upper case and unique", () => {
  const names = MECHANISMS.map((m) => m.name);
  assert.deepEqual(names, ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "OAUTHBEARER", "XOAUTH2", "CRAM-MD5", "PLAIN", "LOGIN", "DIGEST-MD5"]);
  assert.deepEqual([...SERVER_MECHANISMS], names, "the server's list is the registry's");
  assert.equal(new Set(names).size, names.length);
  for (const n of names) assert.equal(n, n.toUpperCase());
});

test("each descriptor says what it needs from the store and whether the password crosses in clear", () => {
  const shape = Object.fromEntries(MECHANISMS.map((m) => [m.name, { needs: m.needs, plaintext: m.plaintext, optIn: m.optIn ?? false }]));
  assert.deepEqual(shape, {
    "SCRAM-SHA-256-PLUS": { needs: "scram-sha-256", plaintext: false, optIn: false },
    "SCRAM-SHA-256": { needs: "scram-sha-256", plaintext: false, optIn: false },
    OAUTHBEARER: { needs: "bearer-token", plaintext: true, optIn: false },
    XOAUTH2: { needs: "bearer-token", plaintext: true, optIn: false },
    "CRAM-MD5": { needs: "cram-md5", plaintext: false, optIn: false },
    PLAIN: { needs: "password", plaintext: true, optIn: false },
    LOGIN: { needs: "password", plaintext: true, optIn: false },
    "DIGEST-MD5": { needs: "digest-md5", plaintext: false, optIn: true },
  });
});

test("the offered list is derived from the credential kinds a store serves, in preference order", () => {
  assert.deepEqual(mechanismsFor(["password"]), ["PLAIN", "LOGIN"], "saslauthd, Dovecot as a verifier");
  assert.deepEqual(mechanismsFor(["password", "cram-md5"]), ["CRAM-MD5", "PLAIN", "LOGIN"]);
  assert.deepEqual(mechanismsFor(["cram-md5", "password", "scram-sha-256", "digest-md5"]), ["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"]);
  assert.deepEqual(mechanismsFor(["password", "scram-sha-256", "cram-md5", "digest-md5"], ["digest-md5"]), [
    "SCRAM-SHA-256",
    "CRAM-MD5",
    "PLAIN",
    "LOGIN",
    "DIGEST-MD5",
  ]);
  assert.deepEqual(mechanismsFor(["password"], ["DIGEST-MD5"]), ["PLAIN", "LOGIN"], "opt-in still needs its credential");
  assert.deepEqual(mechanismsFor([]), []);
  assert.deepEqual(mechanismsFor(["password", "scram-sha-256"], [], true), ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"], "TLS 1.3: -PLUS too");
  assert.deepEqual(mechanismsFor(["password"], [], true), ["PLAIN", "LOGIN"], "-PLUS needs the SCRAM secret too");
  assert.deepEqual(mechanismsFor(["password", "bearer-token"]), ["OAUTHBEARER", "XOAUTH2", "PLAIN", "LOGIN"], "an OIDC issuer configured");
});

test("lookups are case-insensitive; unknown names rank after ours", () => {
  assert.equal(findMechanism("scram-sha-256")?.name, "SCRAM-SHA-256");
  assert.equal(findMechanism("GSSAPI"), undefined);
  assert.deepEqual(
    ["GSSAPI", "LOGIN", "SCRAM-SHA-1", "plain", "SCRAM-SHA-256"].sort((a, b) => mechanismRank(a) - mechanismRank(b)),
    ["SCRAM-SHA-256", "plain", "LOGIN", "GSSAPI", "SCRAM-SHA-1"],
  );
});

test("the factories are the descriptors': a fresh named object per call", () => {
  const opts = serverOptions(new MemoryVerifier({ tim: "pw" }));
  for (const m of MECHANISMS) {
    const server = m.createServer(opts);
    assert.equal(server.name, m.name);
    assert.notEqual(server, m.createServer(opts));
    assert.equal(m.createClient({ username: "tim", password: "pw" }, {}).name, m.name);
    assert.equal(createServerMechanism(m.name, opts)?.name, m.name);
  }
});

test("each mechanism reads the login from its client's first message (for the Dovecot pass-through)", () => {
  const creds = { username: "tim@example.org", password: "pw" };
  for (const m of MECHANISMS) {
    const client = createClientMechanism(m.name, creds, { serverHostname: "mx.example.org", channelBinding: () => Buffer.alloc(32) })!;
    let first = client.initial();
    if (first === null) {
      // The server speaks first: answer its challenge the way each mechanism's client would.
      const challenges: Record<string, string> = {
        "CRAM-MD5": "<1896.697170952@postoffice.example.net>",
        LOGIN: "Username:",
        "DIGEST-MD5": 'realm="mx.example.org",nonce="OA6MG9tEQGm2hh",qop="auth",charset=utf-8,algorithm=md5-sess',
      };
      first = client.respond(Buffer.from(challenges[m.name]!));
    }
    assert.equal(m.loginInFirstMessage?.(first), "tim@example.org", m.name);
  }
  assert.equal(findMechanism("PLAIN")!.loginInFirstMessage!(Buffer.from("garbage")), undefined);
});

test("a store that does not serve a mechanism's credential: mechanism-unavailable, whoever the user", () => {
  const store = new MemoryVerifier({ tim: "pw" });
  store.kinds = ["password"];
  assert.equal(missingSecretReason(store, "cram-md5", "tim"), "mechanism-unavailable");
  assert.equal(missingSecretReason(store, "password", "ghost"), "unknown-user");
  const knowing = Object.assign(store, { hasUser: (user: string) => user === "tim" });
  assert.equal(missingSecretReason(knowing, "password", "tim"), "no-usable-secret");
});
