import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { Readable } from "node:stream";
import { encodeData } from "../../src/delivery/data-encoder.js";
import { SmtpConnection } from "../../src/delivery/smtp-connection.js";

type Chunk = { chunk: Buffer };

/** A connection to a server that swallows everything, and every transport-level write the socket makes. */
async function tappedConnection(): Promise<{ conn: SmtpConnection; writes: Buffer[]; close(): Promise<void> }> {
  const peers = new Set<Socket>();
  const server = createServer((s) => {
    peers.add(s);
    s.resume();
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const socket = connect({ host: "127.0.0.1", port: (server.address() as { port: number }).port });
  // _write/_writev are what a net.Socket hands to the kernel: one call, one write(v) syscall.
  const writes: Buffer[] = [];
  const tap = socket as unknown as {
    _write(chunk: Buffer, encoding: string, cb: () => void): void;
    _writev(chunks: Chunk[], cb: () => void): void;
  };
  const write = tap._write.bind(socket);
  const writev = tap._writev.bind(socket);
  tap._write = (chunk, encoding, cb) => (writes.push(Buffer.from(chunk)), write(chunk, encoding, cb));
  tap._writev = (chunks, cb) => (writes.push(Buffer.concat(chunks.map((c) => c.chunk))), writev(chunks, cb));
  const conn = new SmtpConnection(socket, false);
  await conn.established(5000);
  return {
    conn,
    writes,
    close: () => {
      conn.destroy();
      for (const p of peers) p.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** `n` bytes of 70-byte CRLF lines: the encoder passes them through unchanged. */
const text = (n: number, seed: string) =>
  Buffer.from(Array.from({ length: n }, (_, i) => (i % 70 === 68 ? "\r" : i % 70 === 69 ? "\n" : seed[i % seed.length])).join(""));

test("a small message in several chunks goes out in one write, terminator included", async () => {
  const t = await tappedConnection();
  try {
    const chunks = [text(1500, "abc"), Buffer.from("\n.dot line\n"), text(2500, "xyz")]; // bare LFs, a dot to stuff
    const octets = await t.conn.writeMessage(Readable.from(chunks), 5000);
    const expected = encodeData(Buffer.concat(chunks));
    assert.deepEqual(t.writes, [expected]);
    assert.equal(octets, expected.length);
  } finally {
    await t.close();
  }
});

test("a large message goes out in writes of at most 64 KiB; the last chunk shares its write with the terminator", async () => {
  const t = await tappedConnection();
  try {
    const chunks = Array.from({ length: 13 }, (_, i) => text(i === 12 ? 8 * 1024 : 16 * 1024, String.fromCharCode(97 + i)));
    await t.conn.writeMessage(Readable.from(chunks), 5000);
    assert.deepEqual(Buffer.concat(t.writes), encodeData(Buffer.concat(chunks)));
    assert.deepEqual(
      t.writes.map((w) => w.length),
      [64 * 1024, 64 * 1024, 64 * 1024, 8 * 1024 + 5],
    );
    assert.ok(t.writes.at(-1)!.subarray(-5).equals(Buffer.from("\r\n.\r\n")));
  } finally {
    await t.close();
  }
});

test("one chunk larger than a batch and the terminator still make one write (corked)", async () => {
  const t = await tappedConnection();
  try {
    const big = Buffer.alloc(200 * 1024, 0x61);
    await t.conn.writeMessage(Readable.from([big]), 5000);
    assert.deepEqual(t.writes, [encodeData(big)]);
  } finally {
    await t.close();
  }
});
