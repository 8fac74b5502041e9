import { test } from "node:test";
import assert from "node:assert/strict";
import { CramMd5Client, CramMd5Server } from "../../src/sasl/cram-md5.js";
import { bytes, MemoryVerifier, runExchange, serverOptions } from "./helpers.js";

const RFC_CHALLENGE = "<1896.697170952@postoffice.reston.mci.net>";
const users = () => new MemoryVerifier({ tim: "tanstaaftanstaaf", user: "secret" });

test("RFC 2195 §2 example: server accepts tim's digest of the fixed challenge", async () => {
  const server = new CramMd5Server(serverOptions(users()), { challenge: RFC_CHALLENGE });
  assert.deepEqual(await server.start(null), { kind: "challenge", data: bytes(RFC_CHALLENGE) });
  assert.deepEqual(await server.step(bytes("tim b913a602c7eda7a495b4e6e7334d3890")), {
    kind: "success",
    identity: { authcid: "tim", authzid: "tim" },
  });
});

test("RFC 2195 §2 example: client computes the same response", () => {
  const client = new CramMd5Client({ username: "tim", password: "tanstaaftanstaaf" });
  assert.equal(client.initial(), null);
  assert.equal(client.respond(bytes(RFC_CHALLENGE)).toString(), "tim b913a602c7eda7a495b4e6e7334d3890");
  assert.throws(() => client.respond(bytes(RFC_CHALLENGE)), "only one challenge");
});

test("second known vector (curl's IMAP CRAM-MD5 test data: user/secret)", async () => {
  const server = new CramMd5Server(serverOptions(users()), { challenge: "<1972.987654321@curl>" });
  await server.start(null);
  assert.equal((await server.step(bytes("user 7031725599fdbb5d412689aa323e3e0b"))).kind, "success");
});

test("the default challenge is <random.timestamp@hostname>, different each time", async () => {
  const one = await new CramMd5Server(serverOptions(users())).start(null);
  const two = await new CramMd5Server(serverOptions(users())).start(null);
  assert.match(one.kind === "challenge" ? one.data.toString() : "", /^<\d+\.\d+@mail\.example\.org>$/);
  assert.notDeepEqual(one, two);
});

test("round trip with a random challenge", async () => {
  assert.equal(
    (await runExchange(new CramMd5Server(serverOptions(users())), new CramMd5Client({ username: "tim", password: "tanstaaftanstaaf" }))).kind,
    "success",
  );
  const wrong = await runExchange(new CramMd5Server(serverOptions(users())), new CramMd5Client({ username: "tim", password: "tanstaafl" }));
  assert.deepEqual(wrong, { kind: "failure", reason: "bad-password" });
});

test("unknown user does the same work against a dummy secret and reports unknown-user", async () => {
  const verifier = users();
  const step = await runExchange(new CramMd5Server(serverOptions(verifier)), new CramMd5Client({ username: "nobody", password: "x" }));
  assert.deepEqual(step, { kind: "failure", reason: "unknown-user" });
  assert.deepEqual(verifier.calls, ["cramMd5:nobody"]);
});

test("malformed responses and an initial response are refused", async () => {
  for (const response of [
    "tim",
    "tim b913a602",
    " b913a602c7eda7a495b4e6e7334d3890",
    "tim zz13a602c7eda7a495b4e6e7334d3890",
    "tim\tb913a602c7eda7a495b4e6e7334d3890",
    "",
  ]) {
    const server = new CramMd5Server(serverOptions(users()), { challenge: RFC_CHALLENGE });
    await server.start(null);
    const step = await server.step(bytes(response));
    assert.equal(step.kind === "failure" && step.reason, "malformed", JSON.stringify(response));
  }
  const step = await new CramMd5Server(serverOptions(users())).start(bytes("tim"));
  assert.equal(step.kind === "failure" && step.reason, "malformed");
});

test("a store without CRAM-MD5 secrets gives mechanism-unavailable; a failing store gives backend-error", async () => {
  const limited = users();
  limited.kinds = ["password"];
  limited.cramMd5 = async () => null;
  const client = () => new CramMd5Client({ username: "tim", password: "tanstaaftanstaaf" });
  assert.deepEqual(await runExchange(new CramMd5Server(serverOptions(limited)), client()), { kind: "failure", reason: "mechanism-unavailable" });
  const failing = users();
  failing.broken = true;
  const step = await runExchange(new CramMd5Server(serverOptions(failing)), client());
  assert.equal(step.kind === "failure" && step.reason, "backend-error");
});

test("single-use after the outcome", async () => {
  const server = new CramMd5Server(serverOptions(users()), { challenge: RFC_CHALLENGE });
  await server.start(null);
  await server.step(bytes("tim b913a602c7eda7a495b4e6e7334d3890"));
  const again = await server.step(bytes("tim b913a602c7eda7a495b4e6e7334d3890"));
  assert.equal(again.kind === "failure" && again.reason, "malformed");
});
