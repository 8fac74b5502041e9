/** The dialog-script parser: escapes, generators, one-write groups, repeat blocks, errors with line numbers. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { expand, parseDialogFile } from "./format.js";

test("expand: escapes are exact octets; $(N*x) repeats; $(b64:x) encodes the expanded text", () => {
  assert.deepEqual(expand("a\\r\\n\\0\\xff\\\\\\$"), Buffer.from([0x61, 0x0d, 0x0a, 0x00, 0xff, 0x5c, 0x24]));
  assert.equal(expand("$(3*ab)").toString(), "ababab");
  assert.equal(expand("$(2*x (y)\\r\\n)").toString(), "x (y)\r\nx (y)\r\n");
  assert.equal(expand("$(b64:\\0u\\0p)").toString(), Buffer.from("\0u\0p").toString("base64"));
  assert.equal(expand("é").length, 2, "non-ASCII text is UTF-8");
  assert.equal(expand("$(bdat:ab\\r\\n)").toString(), "BDAT 4\r\nab\r\n", "a chunk with its size");
  assert.equal(expand("$(bdat-last:$(3*x)\\xff)").toString("latin1"), "BDAT 4 LAST\r\nxxx\xff");
  assert.throws(() => expand("\\q"), /unknown escape/);
  assert.throws(() => expand("$(3*a"), /unbalanced/);
});

test("parse: header, groups in one write, repeat blocks, implicit connect, patterns anchored", () => {
  const f = parseDialogFile(
    [
      '@config {"limits": {"recipients": 2}}',
      "@user a@example.org pw s@example.org",
      "== one",
      "< 220",
      "{",
      "> A",
      ">> B\\n",
      "}",
      "repeat 2",
      "> NOOP",
      "< 250",
      "end",
      "!~ AUTH",
      "closed",
      "== two",
      "connect submissions",
      "silent 10",
    ].join("\n"),
  );
  assert.deepEqual(f.config, [{ limits: { recipients: 2 } }]);
  assert.deepEqual(f.users, [{ address: "a@example.org", password: "pw", senders: ["s@example.org"] }]);
  const one = f.dialogs[0]!.steps.map((s) => s.kind);
  assert.deepEqual(one, ["connect", "expect", "send", "send", "expect", "send", "expect", "contains", "closed"]);
  const group = f.dialogs[0]!.steps[2]!;
  assert.ok(group.kind === "send" && group.bytes.toString() === "A\r\nB\n");
  const expect = f.dialogs[0]!.steps[1]!;
  assert.ok(expect.kind === "expect" && expect.pattern.test("220 x") && !expect.pattern.test("5220"));
  assert.deepEqual(f.dialogs[1]!.steps[0], { kind: "connect", listener: "submissions", line: 16 });
});

test("parse: mistakes are reported with their line", () => {
  assert.throws(() => parseDialogFile("== x\nfrobnicate"), /dialog:2: unknown step/);
  assert.throws(() => parseDialogFile("== x\nrepeat 2\n> a"), /repeat without end/);
  assert.throws(() => parseDialogFile("== x\n{\n< 250\n}"), /only > and >> lines/);
  assert.throws(() => parseDialogFile("> a"), /outside any dialog/);
  assert.throws(() => parseDialogFile("== x\n@user a b"), /before the first dialog/);
});

test("parse: delivered with | (CRLF added), || (exact bytes), |~ and |!~ patterns", () => {
  const f = parseDialogFile(["== d", "< 250", "delivered John@example.org", "| Subject: x", "|", "|| a\\0b", "|~ ^Return-Path:", "|!~ \\r(?!\\n)"].join("\n"));
  const step = f.dialogs[0]!.steps.at(-1)!;
  assert.equal(step.kind, "delivered");
  if (step.kind !== "delivered") return;
  assert.equal(step.recipient, "John@example.org");
  assert.deepEqual(step.content.message, Buffer.from("Subject: x\r\n\r\na\0b"));
  assert.deepEqual(
    step.content.patterns.map((p) => [p.pattern.source, p.negated]),
    [
      ["^Return-Path:", false],
      ["\\r(?!\\n)", true],
    ],
  );
  assert.throws(() => parseDialogFile("== d\n< 250\n| orphan"), /dialog:3: \| lines follow a 'delivered' step/);
  assert.throws(() => parseDialogFile("== d\ndelivered <a@b>"), /one recipient address/);
});

test('parse: logged {"field": value, "field~": "regex"}', () => {
  const step = parseDialogFile('== d\nlogged {"event": "auth-failure", "n": 3, "reason~": "^send limit"}').dialogs[0]!.steps.at(-1)!;
  assert.equal(step.kind, "logged");
  if (step.kind !== "logged") return;
  assert.deepEqual(step.fields.slice(0, 2), [
    { field: "event", equals: "auth-failure" },
    { field: "n", equals: 3 },
  ]);
  const last = step.fields[2]!;
  assert.ok("pattern" in last && last.field === "reason" && last.pattern.test("send limit: 3 recipients"));
  assert.throws(() => parseDialogFile("== d\nlogged event=x"), /logged needs a JSON object/);
});
