import { test } from "node:test";
import assert from "node:assert/strict";
import { parseCommand, type ParsedCommand } from "../../src/smtp/command.js";

const parse = (line: string | Buffer) => parseCommand(typeof line === "string" ? Buffer.from(line, "utf8") : line);

/** The reply code and enhanced code of an error or special command, for compact tables. */
function codes(cmd: ParsedCommand): string {
  if (cmd.kind === "error" || cmd.kind === "HTTP" || cmd.kind === "UNKNOWN") {
    return `${cmd.kind} ${cmd.reply.code} ${cmd.reply.enhanced}`;
  }
  return cmd.kind;
}

const accepted: [string, ParsedCommand][] = [
  ["EHLO mail.example.org", { kind: "EHLO", domain: "mail.example.org", isLiteral: false }],
  ["ehlo Mail.Example.ORG", { kind: "EHLO", domain: "mail.example.org", isLiteral: false }],
  ["EHLO localhost", { kind: "EHLO", domain: "localhost", isLiteral: false }],
  ["EHLO example.org.", { kind: "EHLO", domain: "example.org", isLiteral: false }],
  ["EHLO [192.0.2.1]", { kind: "EHLO", domain: "[192.0.2.1]", isLiteral: true }],
  ["EHLO [IPv6:2001:DB8::1]", { kind: "EHLO", domain: "[IPv6:2001:db8::1]", isLiteral: true }],
  ["HELO relay.example.net", { kind: "HELO", domain: "relay.example.net", isLiteral: false }],
  ["HeLo [192.0.2.1]", { kind: "HELO", domain: "[192.0.2.1]", isLiteral: true }],
  ["MAIL FROM:<a@example.org>", { kind: "MAIL", path: "<a@example.org>", params: "" }],
  ["mail from:<>", { kind: "MAIL", path: "<>", params: "" }],
  ["MAIL FROM: <a@example.org>", { kind: "MAIL", path: "<a@example.org>", params: "" }],
  ["MAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME", { kind: "MAIL", path: "<a@example.org>", params: "SIZE=100 BODY=8BITMIME" }],
  ['MAIL FROM:<"a b"@example.org> SMTPUTF8', { kind: "MAIL", path: '<"a b"@example.org>', params: "SMTPUTF8" }],
  ['MAIL FROM:<"a>b"@example.org>', { kind: "MAIL", path: '<"a>b"@example.org>', params: "" }],
  ["MAIL FROM:<jöran@bücher.de> SMTPUTF8", { kind: "MAIL", path: "<jöran@bücher.de>", params: "SMTPUTF8" }],
  ["RCPT TO:<b@example.org>", { kind: "RCPT", path: "<b@example.org>", params: "" }],
  ["rcpt to:<Postmaster>", { kind: "RCPT", path: "<Postmaster>", params: "" }],
  [
    "RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org",
    {
      kind: "RCPT",
      path: "<b@example.org>",
      params: "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org",
    },
  ],
  ["DATA", { kind: "DATA" }],
  ["data", { kind: "DATA" }],
  ["RSET", { kind: "RSET" }],
  ["QUIT", { kind: "QUIT" }],
  ["QUIT ", { kind: "QUIT" }],
  ["STARTTLS", { kind: "STARTTLS" }],
  ["NOOP", { kind: "NOOP" }],
  ["NOOP anything at all", { kind: "NOOP" }],
  ["AUTH PLAIN", { kind: "AUTH", mechanism: "PLAIN" }],
  ["auth plain AHVzZXIAcGFzcw==", { kind: "AUTH", mechanism: "PLAIN", initialResponse: "AHVzZXIAcGFzcw==" }],
  ["AUTH SCRAM-SHA-256 =", { kind: "AUTH", mechanism: "SCRAM-SHA-256", initialResponse: "=" }],
  ["VRFY postmaster", { kind: "VRFY", arg: "postmaster" }],
  ["EXPN staff", { kind: "EXPN", arg: "staff" }],
  ["HELP", { kind: "HELP" }],
  ["HELP MAIL", { kind: "HELP", arg: "MAIL" }],
];
for (const [line, expected] of accepted) {
  test(`command ${JSON.stringify(line)}`, () => {
    assert.deepEqual(parse(line), expected);
  });
}

const refused: [string, string, string][] = [
  ["", "error 500 5.5.2", "empty line"],
  ["EHLO", "error 501 5.5.4", "EHLO without a domain"],
  ["EHLO a b", "error 501 5.5.4", "EHLO with two arguments"],
  ["EHLO bad_name.example", "error 501 5.5.4", "EHLO underscore (not LDH, SECURITY rule 19)"],
  ["EHLO -a.example", "error 501 5.5.4", "EHLO label starting with a hyphen"],
  ["EHLO a..b", "error 501 5.5.4", "EHLO empty label"],
  ["EHLO [300.1.1.1]", "error 501 5.5.4", "EHLO bad IPv4 literal"],
  ["EHLO [IPv6:fe80::1%eth0]", "error 501 5.5.4", "EHLO IPv6 literal with a zone"],
  ["EHLO [tag:content]", "error 501 5.5.4", "EHLO general address literal"],
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal text ${jndi:x} is the attack under test
  ["EHLO ${jndi:x}", "error 501 5.5.4", "EHLO template injection attempt"],
  ["EHLO b\xc3\xbccher.de", "error 500 5.5.2", "EHLO non-ASCII"],
  ["DATA x", "error 501 5.5.4", "DATA with an argument"],
  ["STARTTLS x", "error 501 5.5.4", "STARTTLS with an argument"],
  ["QUIT now", "error 501 5.5.4", "QUIT with an argument"],
  ["RSET x", "error 501 5.5.4", "RSET with an argument"],
  ["AUTH", "error 501 5.5.4", "AUTH without a mechanism"],
  ["AUTH PLAIN a b", "error 501 5.5.4", "AUTH with too many arguments"],
  ["AUTH PL@IN", "error 501 5.5.4", "AUTH bad mechanism name"],
  ["AUTH ABCDEFGHIJKLMNOPQRSTU", "error 501 5.5.4", "AUTH mechanism name over 20 characters"],
  ["VRFY", "error 501 5.5.4", "VRFY without an argument"],
  ["EXPN", "error 501 5.5.4", "EXPN without an argument"],
  ["MAIL", "error 501 5.5.2", "MAIL without FROM"],
  ["MAIL TO:<a@b.example>", "error 501 5.5.2", "MAIL with TO:"],
  ["MAIL FROM:a@example.org", "error 501 5.5.2", "MAIL path without angle brackets"],
  ["MAIL FROM:<a@example.org", "error 501 5.5.2", "MAIL path without closing bracket"],
  ["MAIL FROM:  <a@example.org>", "error 501 5.5.2", "two spaces after the colon"],
  ["MAIL FROM :<a@example.org>", "error 501 5.5.2", "space before the colon"],
  ["MAIL FROM:<a@example.org>SIZE=1", "error 501 5.5.2", "parameters not separated by a space"],
  ["MAIL FROM:<a@b@example.org>", "error 501 5.1.7", "bad sender address"],
  ['MAIL FROM:<"a@example.org>', "error 501 5.1.7", "unbalanced quote in the sender"],
  ["RCPT TO:<>", "error 501 5.1.3", "null recipient"],
  ["RCPT TO:<a@b@example.org>", "error 501 5.1.3", "bad recipient address"],
  ["RCPT TO:<b@example.org> =x", "error 501 5.5.4", "bad parameter syntax"],
  ["RCPT TO:<b@example.org> A=", "error 501 5.5.4", "empty parameter value"],
  ["MAIL FROM:<a@example.org> SIZE=1=2", "error 501 5.5.4", "'=' inside a parameter value"],
  ["MAIL FROM:<a@\xff.org>", "error 500 5.5.2", "invalid UTF-8"],
  ["NOOP\0", "error 500 5.5.2", "NUL byte"],
  ["NOOP\tx", "error 500 5.5.2", "TAB"],
  ["NOOP \x1b[31m", "error 500 5.5.2", "terminal escape"],
  ["NOOP \x7f", "error 500 5.5.2", "DEL"],
  ["HELP \xc3\xa9", "error 500 5.5.2", "UTF-8 outside MAIL/RCPT"],
  ["ETRN example.org", "UNKNOWN 500 5.5.1", "ETRN (not offered)"],
  ["TURN", "UNKNOWN 500 5.5.1", "TURN"],
  ["XYZZY", "UNKNOWN 500 5.5.1", "unknown verb"],
  ["GET / HTTP/1.1", "HTTP 221 2.7.0", "HTTP GET (SECURITY rule 5)"],
  ["POST /x HTTP/1.0", "HTTP 221 2.7.0", "HTTP POST"],
  ["PUT /x HTTP/1.1", "HTTP 221 2.7.0", "HTTP PUT"],
  ["HEAD / HTTP/1.1", "HTTP 221 2.7.0", "HTTP HEAD"],
  ["CONNECT mx.example:25 HTTP/1.1", "HTTP 221 2.7.0", "HTTP CONNECT"],
  ["OPTIONS * HTTP/1.1", "HTTP 221 2.7.0", "HTTP OPTIONS"],
  ["Host: mail.example.org", "HTTP 221 2.7.0", "header-like line"],
  ["User-Agent: curl/8", "HTTP 221 2.7.0", "User-Agent header"],
  ["Subject: pipelined body before 354", "HTTP 221 2.7.0", "message header sent as a command"],
];
for (const [line, expected, why] of refused) {
  test(`command refused: ${why}`, () => {
    // latin1: each character is one byte on the wire, so "\xff" is a lone 0xFF byte.
    assert.equal(codes(parse(Buffer.from(line, "latin1"))), expected);
  });
}

test("replies never echo what the client sent (SECURITY rule 19)", () => {
  for (const line of ["XYZZY<script>", "EHLO <x>", "GET /<x>", "MAIL FROM:<<x>@y>"]) {
    const cmd = parse(line);
    assert.ok("reply" in cmd, line);
    assert.ok(!cmd.reply.lines.join("").includes("<x>"), line);
  }
});

test("the UNKNOWN verb is reported upper-cased for logs", () => {
  assert.deepEqual(parse("xyzzy 1"), { kind: "UNKNOWN", verb: "XYZZY", reply: { code: 500, enhanced: "5.5.1", lines: ["Command unrecognized"] } });
});
