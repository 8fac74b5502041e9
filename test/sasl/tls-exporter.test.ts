/** RFC 9266 tls-exporter data on real loopback TLS connections: equal at both ends, per connection, TLS 1.3 only. */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, createServer, type Server, type TLSSocket } from "node:tls";
import { TLS_EXPORTER_LABEL, tlsExporterBinding } from "../../src/sasl/tls-exporter.js";
import { makeSelfSigned } from "../helpers/self-signed.js";

let dir: string;
let server: Server;
const accepted: TLSSocket[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "postern-exporter-"));
  const files = { cert: join(dir, "cert.pem"), key: join(dir, "key.pem") };
  await makeSelfSigned({ cn: "localhost", ...files });
  server = createServer({ cert: await readFile(files.cert), key: await readFile(files.key), minVersion: "TLSv1.2" }, (s) => accepted.push(s));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
});
after(async () => {
  for (const s of accepted) s.destroy();
  server.close();
  await rm(dir, { recursive: true, force: true });
});

/** A client connection and the server's end of it. */
async function pair(maxVersion: "TLSv1.2" | "TLSv1.3"): Promise<{ client: TLSSocket; server: TLSSocket }> {
  const seen = accepted.length;
  const client = connect({ host: "127.0.0.1", port: (server.address() as AddressInfo).port, rejectUnauthorized: false, maxVersion });
  await once(client, "secureConnect");
  while (accepted.length === seen) await once(server, "secureConnection");
  return { client, server: accepted[accepted.length - 1]! };
}

test("TLS 1.3: 32 bytes, the same at both ends, different on another connection; no context equals an empty one", async () => {
  const a = await pair("TLSv1.3");
  const b = await pair("TLSv1.3");
  const clientA = tlsExporterBinding(a.client)!;
  assert.equal(clientA.length, 32);
  assert.deepEqual(tlsExporterBinding(a.server), clientA);
  assert.notDeepEqual(tlsExporterBinding(b.client), clientA);
  // RFC 9266 asks for no context; RFC 8446 §7.5 makes that the same as an empty one in TLS 1.3.
  const noContext = (a.client.exportKeyingMaterial as (length: number, label: string) => Buffer)(32, TLS_EXPORTER_LABEL);
  assert.deepEqual(noContext, clientA);
  a.client.destroy();
  b.client.destroy();
});

test("TLS 1.2: no binding (RFC 9266 §3), at either end; a closed socket has none either", async () => {
  const c = await pair("TLSv1.2");
  assert.equal(c.client.getProtocol(), "TLSv1.2");
  assert.equal(tlsExporterBinding(c.client), null);
  assert.equal(tlsExporterBinding(c.server), null);
  c.client.destroy();
  const d = await pair("TLSv1.3");
  d.client.destroy();
  assert.equal(tlsExporterBinding(d.client), null);
});
