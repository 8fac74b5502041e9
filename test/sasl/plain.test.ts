import { test } from "node:test";
import assert from "node:assert/strict";
import { PlainClient, PlainServer, parsePlainMessage } from "../../src/sasl/plain.js";
import { bytes, MemoryVerifier, runExchange, serverOptions } from "./helpers.js";

const users = () => new MemoryVerifier({ tim: "tanstaaftanstaaf", Kurt: "xipj3plmq" });

test("RFC 4616 §4 example 1: empty authzid acts as the authcid", async () => {
  const server = new PlainServer(serverOptions(users()));
  assert.deepEqual(await server.start(bytes("\0tim\0tanstaaftanstaaf")), {
    kind: "success",
    identity: { authcid: "tim", authzid: "tim" },
  });
});

test("RFC 4616 §4 example 2: Kurt acting as Ursel is refused unless the policy permits it", async () => {
  const message = bytes("Ursel\0Kurt\0xipj3plmq");
  const refused = await new PlainServer(serverOptions(users())).start(message);
  assert.deepEqual(refused, { kind: "failure", reason: "authzid-not-permitted" });

  const asked: string[] = [];
  const authzidAllowed = (authcid: string, authzid: string) => (asked.push(`${authcid}->${authzid}`), true);
  const allowed = await new PlainServer(serverOptions(users(), { authzidAllowed })).start(message);
  assert.deepEqual(allowed, { kind: "success", identity: { authcid: "Kurt", authzid: "Ursel" } });
  assert.deepEqual(asked, ["Kurt->Ursel"]);
});

test("an authzid equal to the authcid needs no permission", async () => {
  const step = await new PlainServer(serverOptions(users())).start(bytes("tim\0tim\0tanstaaftanstaaf"));
  assert.deepEqual(step, { kind: "success", identity: { authcid: "tim", authzid: "tim" } });
});

test("the password is checked for the authcid, never the authzid (SECURITY rule 11)", async () => {
  const verifier = users();
  const step = await new PlainServer(serverOptions(verifier, { authzidAllowed: () => true })).start(bytes("tim\0Kurt\0tanstaaftanstaaf"));
  assert.deepEqual(step, { kind: "failure", reason: "bad-password" });
  assert.deepEqual(verifier.calls, ["verifyPassword:Kurt"]);
});

test("without an initial response the server sends an empty challenge, then takes the message", async () => {
  const server = new PlainServer(serverOptions(users()));
  assert.deepEqual(await server.start(null), { kind: "challenge", data: Buffer.alloc(0) });
  const step = await server.step(bytes("\0tim\0tanstaaftanstaaf"));
  assert.equal(step.kind, "success");
});

test("bad password and unknown user are told apart in the reason", async () => {
  assert.deepEqual(await new PlainServer(serverOptions(users())).start(bytes("\0tim\0wrong")), { kind: "failure", reason: "bad-password" });
  assert.deepEqual(await new PlainServer(serverOptions(users())).start(bytes("\0nobody\0x")), { kind: "failure", reason: "unknown-user" });
});

const MALFORMED: Record<string, Buffer> = {
  "one NUL": bytes("tim\0tanstaaftanstaaf"),
  "three NULs": bytes("\0tim\0tanstaaf\0tanstaaf"),
  "no NUL": bytes("tim tanstaaftanstaaf"),
  "empty message (AUTH PLAIN =)": Buffer.alloc(0),
  "empty password": bytes("\0tim\0"),
  "empty authcid": bytes("\0\0tanstaaftanstaaf"),
  "tab in the password": bytes("\0tim\0tanstaaf\ttanstaaf"),
  "CR LF in the authcid": bytes("\0tim\r\n\0tanstaaftanstaaf"),
  "control char in the authzid": bytes("x\u0001\0tim\0tanstaaftanstaaf"),
  DEL: bytes("\0tim\0tanstaaf\u007f"),
  "C1 control (NEL)": bytes("\0tim\0tanstaaf\u0085"),
  "invalid UTF-8": Buffer.concat([bytes("\0tim\0"), Buffer.from([0xff, 0xfe])]),
};

for (const [name, message] of Object.entries(MALFORMED)) {
  test(`malformed PLAIN is refused before any lookup: ${name}`, async () => {
    const verifier = users();
    const step = await new PlainServer(serverOptions(verifier)).start(message);
    assert.equal(step.kind, "failure");
    assert.equal(step.kind === "failure" && step.reason, "malformed");
    assert.deepEqual(verifier.calls, []);
    assert.ok(!JSON.stringify(step).includes("tanstaaf"), "no secret in the failure");
  });
}

test("the object is single-use: any call after the outcome is malformed", async () => {
  const server = new PlainServer(serverOptions(users()));
  assert.equal((await server.start(bytes("\0tim\0tanstaaftanstaaf"))).kind, "success");
  assert.deepEqual(await server.step(bytes("\0tim\0tanstaaftanstaaf")), { kind: "failure", reason: "malformed", detail: "exchange already finished" });
  assert.equal((await server.start(bytes("\0tim\0tanstaaftanstaaf"))).kind, "failure");
  const failed = new PlainServer(serverOptions(users()));
  await failed.start(bytes("\0tim\0wrong"));
  assert.equal((await failed.step(bytes("\0tim\0tanstaaftanstaaf"))).kind, "failure");
});

test("client builds the RFC 4616 message, with or without an initial response", async () => {
  assert.deepEqual(new PlainClient({ username: "Kurt", password: "xipj3plmq", authzid: "Ursel" }).initial(), bytes("Ursel\0Kurt\0xipj3plmq"));
  assert.deepEqual(parsePlainMessage(bytes("Ursel\0Kurt\0xipj3plmq")), { authzid: "Ursel", authcid: "Kurt", password: "xipj3plmq" });
  for (const useInitialResponse of [true, false]) {
    const step = await runExchange(new PlainServer(serverOptions(users())), new PlainClient({ username: "tim", password: "tanstaaftanstaaf" }), {
      useInitialResponse,
    });
    assert.equal(step.kind, "success");
  }
  const client = new PlainClient({ username: "tim", password: "x" });
  client.initial();
  assert.throws(() => client.respond(Buffer.alloc(0)));
});
