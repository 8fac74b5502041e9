/**
 * TLS session resumption (issue 6): a returning client resumes with the ticket of its previous
 * session instead of paying for a full handshake again — on implicit TLS (port 465 style) and
 * after STARTTLS (port 587 style), whose TLSSocket is built from the server's shared context.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { startPostern, type Postern } from "../e2e/helpers/postern.js";

let server: Postern;
before(async () => {
  server = await startPostern();
});
after(async () => {
  await server.cleanup();
});

/** Reads until one complete SMTP reply (last line "NNN ") has arrived. */
function reply(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const onData = (d: Buffer) => {
      text += d.toString("latin1");
      if (/(^|\r\n)\d{3} [^\r\n]*\r\n$/.test(text)) {
        socket.off("data", onData);
        resolve(text);
      }
    };
    socket.on("data", onData);
    socket.once("error", reject);
    socket.once("close", () => reject(new Error(`closed; received: ${JSON.stringify(text)}`)));
  });
}

/** Completes a handshake (offering `session` if given) and one EHLO; returns reuse and the new session. */
async function finish(tls: TLSSocket, greeted: boolean): Promise<{ reused: boolean; session?: Buffer }> {
  const session = new Promise<Buffer>((resolve) => tls.once("session", resolve));
  const greeting = greeted ? null : reply(tls);
  await new Promise<void>((resolve, reject) => {
    tls.once("secureConnect", resolve);
    tls.once("error", reject);
  });
  // The client speaks only after the greeting (RFC 5321 §4.3.1; talking first is refused).
  if (greeting) assert.match(await greeting, /^220 /);
  tls.write("EHLO client.example\r\n");
  assert.match(await reply(tls), /^250[ -]/);
  const reused = tls.isSessionReused();
  // TLS 1.3 sends the ticket after a full handshake (the EHLO round trip has carried it); a
  // resumed session need not get a new one.
  const ticket = reused ? undefined : await session;
  tls.end("QUIT\r\n");
  return { reused, session: ticket };
}

async function implicitTls(session?: Buffer) {
  return finish(tlsConnect({ host: "127.0.0.1", port: server.ports.submissions, rejectUnauthorized: false, session }), false);
}

/** A plain connection to the submission port, up to the server's 220 to STARTTLS. */
async function readyForTls(): Promise<Socket> {
  const raw = netConnect({ host: "127.0.0.1", port: server.ports.submission });
  assert.match(await reply(raw), /^220 /);
  raw.write("EHLO client.example\r\n");
  assert.match(await reply(raw), /STARTTLS/);
  raw.write("STARTTLS\r\n");
  assert.match(await reply(raw), /^220 /);
  return raw;
}

async function startTls(session?: Buffer) {
  return finish(tlsConnect({ socket: await readyForTls(), rejectUnauthorized: false, session }), true);
}

test("a client that resets after a completed STARTTLS is a disconnect, not a failed handshake", async () => {
  const raw = await readyForTls();
  const tls = tlsConnect({ socket: raw, rejectUnauthorized: false });
  await new Promise<void>((resolve, reject) => tls.once("secureConnect", resolve).once("error", reject));
  const established = await server.waitForLog((l) => l.event === "tls" && l.listener === "submission");
  raw.resetAndDestroy();
  await server.waitForLog((l) => l.event === "disconnect" && l.conn === established.conn);
  assert.deepEqual(
    server.logs.filter((l) => l.event === "tls-failed" && l.conn === established.conn),
    [],
  );
});

test("implicit TLS: a second connection resumes the first one's session", async () => {
  const first = await implicitTls();
  assert.equal(first.reused, false);
  const second = await implicitTls(first.session);
  assert.equal(second.reused, true);
});

test("STARTTLS: a second connection resumes the first one's session", async () => {
  const first = await startTls();
  assert.equal(first.reused, false);
  const second = await startTls(first.session);
  assert.equal(second.reused, true);
});
