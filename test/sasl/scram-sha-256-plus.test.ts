/**
 * SCRAM-SHA-256-PLUS with tls-exporter (RFC 5802 §6, RFC 9266) on fixed binding data, and the
 * downgrade cases of plain SCRAM-SHA-256 on a connection where -PLUS is offered.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ScramSha256Client, ScramSha256PlusServer, ScramSha256Server } from "../../src/sasl/scram-sha-256.js";
import { deriveScramSha256 } from "../../src/sasl/secrets.js";
import type { SaslServerStep } from "../../src/sasl/types.js";
import { bytes, MemoryVerifier, runExchange, serverOptions } from "./helpers.js";

const BINDING = Buffer.alloc(32, 0xa5);
const OTHER_BINDING = Buffer.alloc(32, 0x5a);
const NONCE = "rOprNGfwEbeRWgbNEkqO";

function verifier(): MemoryVerifier {
  const v = new MemoryVerifier({ user: "pencil" });
  v.setScram("user", deriveScramSha256("pencil", Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64"), 4096));
  return v;
}
/** A server on a connection whose tls-exporter data is `binding` (null: not TLS 1.3). */
const plusServer = (binding: Buffer | null = BINDING, v = verifier()) => new ScramSha256PlusServer(serverOptions(v, { channelBinding: () => binding }));
const plainServer = (binding: Buffer | null = BINDING, v = verifier()) => new ScramSha256Server(serverOptions(v, { channelBinding: () => binding }));
const plusClient = (binding: Buffer | null = BINDING) =>
  new ScramSha256Client({ username: "user", password: "pencil" }, { clientNonce: NONCE }, { plus: true, data: () => binding });
const failed = (step: SaslServerStep) => (step.kind === "failure" ? { reason: step.reason, detail: step.detail } : { reason: step.kind, detail: "" });

test("-PLUS succeeds when both ends bind to the same tls-exporter data; c= is the gs2 header and the data", async () => {
  const client = plusClient();
  const first = client.initial().toString();
  assert.equal(first, `p=tls-exporter,,n=user,r=${NONCE}`);
  const server = plusServer();
  assert.equal(server.name, "SCRAM-SHA-256-PLUS");
  const serverFirst = await server.start(bytes(first));
  assert.equal(serverFirst.kind, "challenge");
  const final = client.respond((serverFirst as { data: Buffer }).data).toString();
  const c = Buffer.from(/^c=([^,]+),/.exec(final)![1]!, "base64");
  assert.deepEqual(c, Buffer.concat([bytes("p=tls-exporter,,"), BINDING]));
  const serverFinal = await server.step(bytes(final));
  assert.equal(serverFinal.kind, "challenge");
  assert.deepEqual(client.respond((serverFinal as { data: Buffer }).data), Buffer.alloc(0), "the client checked the server signature");
  assert.deepEqual(await server.step(Buffer.alloc(0)), { kind: "success", identity: { authcid: "user", authzid: "user" } });
  const withAuthzid = await runExchange(
    plusServer(),
    new ScramSha256Client({ username: "user", password: "pencil", authzid: "user" }, {}, { plus: true, data: () => BINDING }),
  );
  assert.equal(withAuthzid.kind, "success");
});

test("-PLUS with another connection's binding (a relay between two TLS connections) fails, whatever the password", async () => {
  for (const password of ["pencil", "wrong"]) {
    const client = new ScramSha256Client({ username: "user", password }, {}, { plus: true, data: () => OTHER_BINDING });
    const step = await runExchange(plusServer(BINDING), client);
    assert.equal(failed(step).reason, "channel-binding", password);
  }
  // c= with the gs2 header alone (the binding left out) is refused the same way.
  const server = plusServer();
  const serverFirst = (await server.start(bytes(`p=tls-exporter,,n=user,r=${NONCE}`))) as { data: Buffer };
  const nonce = /r=([^,]+)/.exec(serverFirst.data.toString())![1]!;
  const headerOnly = `c=${bytes("p=tls-exporter,,").toString("base64")},r=${nonce},p=${Buffer.alloc(32).toString("base64")}`;
  assert.equal(failed(await server.step(bytes(headerOnly))).reason, "channel-binding");
});

test("RFC 5802 §6: plain SCRAM with y is refused where -PLUS is offered (downgrade), accepted where it is not; n is fine", async () => {
  const yClient = () => new ScramSha256Client({ username: "user", password: "pencil" }, {}, { plus: false, data: () => OTHER_BINDING });
  assert.match(yClient().initial().toString(), /^y,,n=user,/, "our client says y when it could bind");
  const v = verifier();
  const downgraded = await plainServer(BINDING, v).start(bytes(`y,,n=user,r=${NONCE}`));
  assert.deepEqual(failed(downgraded), { reason: "channel-binding", detail: "gs2 flag y while SCRAM-SHA-256-PLUS is offered (downgrade)" });
  assert.deepEqual(v.calls, [], "refused before any lookup");
  assert.equal((await runExchange(plainServer(null), yClient())).kind, "success", "TLS 1.2 or no TLS: y is honest");
  assert.equal((await runExchange(new ScramSha256Server(serverOptions(verifier())), yClient())).kind, "success", "no binding at all");
  const nClient = new ScramSha256Client({ username: "user", password: "pencil" });
  assert.equal((await runExchange(plainServer(BINDING), nClient)).kind, "success", "n: the client cannot bind");
});

test("p= on plain SCRAM is malformed; n or y on -PLUS is malformed", async () => {
  for (const binding of [BINDING, null]) {
    assert.equal(failed(await plainServer(binding).start(bytes(`p=tls-exporter,,n=user,r=${NONCE}`))).reason, "malformed");
  }
  for (const flag of ["n", "y"]) {
    const v = verifier();
    assert.equal(failed(await plusServer(BINDING, v).start(bytes(`${flag},,n=user,r=${NONCE}`))).reason, "malformed", flag);
    assert.deepEqual(v.calls, []);
  }
  for (const bad of [`p=,,n=user,r=${NONCE}`, `p=tls_unique,,n=user,r=${NONCE}`, "p=tls-exporter", `p=tls-exporter,n=user,r=${NONCE}`]) {
    assert.equal(failed(await plusServer().start(bytes(bad))).reason, "malformed", bad);
  }
});

test("-PLUS with an unsupported binding type (tls-unique, tls-server-end-point) is refused: unsupported-channel-binding-type", async () => {
  for (const type of ["tls-unique", "tls-server-end-point"]) {
    const v = verifier();
    const step = failed(await plusServer(BINDING, v).start(bytes(`p=${type},,n=user,r=${NONCE}`)));
    assert.deepEqual(step, { reason: "channel-binding", detail: `unsupported channel binding type ${type}` });
    assert.deepEqual(v.calls, []);
  }
});

test("-PLUS on a connection without tls-exporter data fails; our -PLUS client refuses to start without it", async () => {
  assert.equal(failed(await plusServer(null).start(bytes(`p=tls-exporter,,n=user,r=${NONCE}`))).reason, "channel-binding");
  assert.throws(() => plusClient(null).initial(), /no tls-exporter channel binding \(needs TLS 1\.3\)/);
  assert.throws(() => new ScramSha256Client({ username: "user", password: "pencil" }, {}, { plus: true }).initial(), /needs TLS 1\.3/);
});
