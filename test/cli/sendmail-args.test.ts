/** sendmail's own option spellings and message handling, without a server. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { normalizeArgv } from "../../src/cli/toolbox.js";
import { addressesIn, extractRecipients, prepareMessage } from "../../src/cli/sendmail.js";

describe("sendmail compatibility", () => {
  it("-oi means -i; other -o/-B options are ignored; a program named sendmail runs the command", () => {
    assert.deepEqual(normalizeArgv(["node", "/usr/sbin/sendmail", "-oi", "-odi", "-oem", "-B8BITMIME", "-t"]), [
      "node",
      "/usr/sbin/sendmail",
      "sendmail",
      "-i",
      "-t",
    ]);
    assert.deepEqual(normalizeArgv(["node", "postern.js", "sendmail", "-f", "a@b.c", "--", "-weird@b.c"]), [
      "node",
      "postern.js",
      "sendmail",
      "-f",
      "a@b.c",
      "--",
      "-weird@b.c",
    ]);
    assert.deepEqual(normalizeArgv(["node", "postern.js", "check", "-oi"]), ["node", "postern.js", "check", "-oi"]);
  });

  it("LF becomes CRLF; a lone dot ends the message unless -i", () => {
    assert.equal(prepareMessage(Buffer.from("a\nb\r\n.\nc\n"), false).toString(), "a\r\nb\r\n");
    assert.equal(prepareMessage(Buffer.from("a\n.\nc"), true).toString(), "a\r\n.\r\nc\r\n");
    assert.equal(prepareMessage(Buffer.from("bare\rcr\n"), true).toString(), "barecr\r\n");
  });

  it("-t reads To, Cc and Bcc (folded, with names and comments) and drops Bcc", () => {
    const msg = Buffer.from(
      'To: "Doe, J" <j@example.org>, k@example.org (Kay)\r\nCc: undisclosed:;\r\nBcc: <h@example.com>,\r\n x@example.net\r\nSubject: s\r\n\r\nBcc: not a header\r\n',
    );
    const { recipients, message } = extractRecipients(msg);
    assert.deepEqual(recipients, ["j@example.org", "k@example.org", "h@example.com", "x@example.net"]);
    assert.equal(message.toString(), 'To: "Doe, J" <j@example.org>, k@example.org (Kay)\r\nCc: undisclosed:;\r\nSubject: s\r\n\r\nBcc: not a header\r\n');
    assert.deepEqual(addressesIn("team: a@b.c, d@e.f;"), ["a@b.c", "d@e.f"]);
  });
});
