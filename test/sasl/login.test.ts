import { test } from "node:test";
import assert from "node:assert/strict";
import { LoginClient, LoginServer } from "../../src/sasl/login.js";
import { bytes, MemoryVerifier, runExchange, serverOptions } from "./helpers.js";

const users = () => new MemoryVerifier({ "tim@example.org": "tanstaaftanstaaf" });

test("server prompts Username: then Password: and verifies", async () => {
  const server = new LoginServer(serverOptions(users()));
  assert.deepEqual(await server.start(null), { kind: "challenge", data: bytes("Username:") });
  assert.deepEqual(await server.step(bytes("tim@example.org")), { kind: "challenge", data: bytes("Password:") });
  assert.deepEqual(await server.step(bytes("tanstaaftanstaaf")), {
    kind: "success",
    identity: { authcid: "tim@example.org", authzid: "tim@example.org" },
  });
});

test("an initial response is the user name", async () => {
  const server = new LoginServer(serverOptions(users()));
  assert.deepEqual(await server.start(bytes("tim@example.org")), { kind: "challenge", data: bytes("Password:") });
  assert.equal((await server.step(bytes("tanstaaftanstaaf"))).kind, "success");
});

test("failures: bad password, unknown user, empty or control-laden input", async () => {
  const run = async (user: Buffer, password: Buffer) => {
    const server = new LoginServer(serverOptions(users()));
    const first = await server.start(user);
    return first.kind === "challenge" ? server.step(password) : first;
  };
  assert.deepEqual(await run(bytes("tim@example.org"), bytes("nope")), { kind: "failure", reason: "bad-password" });
  assert.deepEqual(await run(bytes("who@example.org"), bytes("nope")), { kind: "failure", reason: "unknown-user" });
  for (const [user, password] of [
    [Buffer.alloc(0), bytes("x")],
    [bytes("tim@example.org"), Buffer.alloc(0)],
    [bytes("tim\r\n"), bytes("x")],
    [bytes("tim@example.org"), Buffer.from([0xc3])],
  ]) {
    const step = await run(user!, password!);
    assert.equal(step.kind === "failure" && step.reason, "malformed");
  }
});

test("single-use after the outcome", async () => {
  const server = new LoginServer(serverOptions(users()));
  await server.start(bytes("tim@example.org"));
  await server.step(bytes("tanstaaftanstaaf"));
  const again = await server.step(bytes("tanstaaftanstaaf"));
  assert.equal(again.kind === "failure" && again.reason, "malformed");
});

test("client answers the two prompts in order and refuses a third", async () => {
  const client = new LoginClient({ username: "tim@example.org", password: "tanstaaftanstaaf" });
  assert.equal(client.initial(), null);
  const step = await runExchange(new LoginServer(serverOptions(users())), client);
  assert.equal(step.kind, "success");
  assert.throws(() => client.respond(bytes("More:")));
});
