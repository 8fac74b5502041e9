/** The HELO and EHLO replies (src/smtp/ehlo.ts). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { helloReply } from "../../src/smtp/ehlo.js";

const offer = { hostname: "mx.example.org", remoteIp: "198.51.100.7", messageSize: 1024, startTls: true, mechanisms: ["PLAIN", "LOGIN"] };

test("HELO: one line, no extensions", () => {
  assert.deepEqual(helloReply("HELO", "client.example.net", offer).lines, ["mx.example.org Hello client.example.net [198.51.100.7]"]);
});

test("EHLO: the extensions, STARTTLS and AUTH only when offered", () => {
  assert.deepEqual(helloReply("EHLO", "c.example", offer).lines.slice(1), [
    "PIPELINING",
    "SIZE 1024",
    "8BITMIME",
    "ENHANCEDSTATUSCODES",
    "SMTPUTF8",
    "DSN",
    "CHUNKING",
    "STARTTLS",
    "AUTH PLAIN LOGIN",
  ]);
  const bare = helloReply("EHLO", "c.example", { ...offer, startTls: false, mechanisms: [] }).lines;
  assert.equal(bare.includes("STARTTLS"), false);
  assert.equal(
    bare.some((l) => l.startsWith("AUTH")),
    false,
  );
});
