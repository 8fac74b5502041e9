import { test } from "node:test";
import assert from "node:assert/strict";
import { HeaderCollector, type HeaderInfo } from "../../src/smtp/headers.js";

interface Run {
  output: string;
  info: HeaderInfo | undefined;
  hookCalls: number;
  /** Index of the push (or "finish") at which the held bytes were released. */
  releasedAt: number | "finish" | undefined;
  maxHeldSeen: number;
}

function collect(chunks: string[], maxHeaderBytes = 262144, prefix = "Received: by us\r\n"): Run {
  const hc = new HeaderCollector({ maxHeaderBytes });
  const run: Run = { output: "", info: undefined, hookCalls: 0, releasedAt: undefined, maxHeldSeen: 0 };
  hc.setHeaderEndHook((info) => {
    run.info = info;
    run.hookCalls++;
    return Buffer.from(prefix);
  });
  let pending = 0;
  chunks.forEach((chunk, i) => {
    const out = hc.push(Buffer.from(chunk, "utf8"));
    if (out.length === 0) pending += Buffer.byteLength(chunk);
    else {
      pending = 0;
      run.releasedAt ??= i;
    }
    run.maxHeldSeen = Math.max(run.maxHeldSeen, pending);
    run.output += Buffer.concat(out).toString("utf8");
  });
  const last = hc.finish();
  if (last.length > 0) run.releasedAt ??= "finish";
  run.output += Buffer.concat(last).toString("utf8");
  return run;
}

const message =
  "Received: from a by b\r\n" +
  "Received: from c\r\n by d\r\n" +
  "From: Alice <alice@example.org>\r\n" +
  "Subject: a folded\r\n\tsubject line\r\n" +
  "X-Empty:\r\n" +
  "\r\n" +
  "Body: not a header\r\n";

test("the hook's prefix goes on top; bytes come out unchanged and in order", () => {
  const r = collect([message]);
  assert.equal(r.output, "Received: by us\r\n" + message);
  assert.equal(r.hookCalls, 1);
});

test("fields are unfolded, names kept as written, lookup is case-insensitive", () => {
  const { info } = collect([message]);
  assert.ok(info);
  assert.deepEqual(info.fields, [
    { name: "Received", value: "from a by b" },
    { name: "Received", value: "from c by d" },
    { name: "From", value: "Alice <alice@example.org>" },
    { name: "Subject", value: "a folded\tsubject line" },
    { name: "X-Empty", value: "" },
  ]);
  assert.equal(info.count("received"), 2, "Received: count for loop detection");
  assert.equal(info.get("FROM"), "Alice <alice@example.org>");
  assert.deepEqual(info.getAll("received"), ["from a by b", "from c by d"]);
  assert.equal(info.get("Body"), undefined, "body lines are not fields");
  assert.equal(info.count("message-id"), 0);
  assert.equal(info.truncated, false);
  assert.equal(info.malformed, false);
});

test("the header end is found at any split, including one byte at a time; hook called once", () => {
  for (let cut = 0; cut <= message.length; cut++) {
    const r = collect([message.slice(0, cut), message.slice(cut)]);
    assert.equal(r.output, "Received: by us\r\n" + message, `cut ${cut}`);
    assert.equal(r.hookCalls, 1);
    assert.equal(r.info!.fields.length, 5);
  }
  const bytes = collect([...message]);
  assert.equal(bytes.hookCalls, 1);
  assert.equal(bytes.info!.get("subject"), "a folded\tsubject line");
});

test("after the header section, chunks pass straight through", () => {
  const r = collect(["A: 1\r\n\r\n", "body 1\r\n", "body 2\r\n"]);
  assert.equal(r.releasedAt, 0);
  assert.equal(r.output, "Received: by us\r\nA: 1\r\n\r\nbody 1\r\nbody 2\r\n");
});

test("no blank line: everything is held until finish(), then released with all complete fields", () => {
  const r = collect(["From: a@example.org\r\n", "Subject: only headers\r\n"]);
  assert.equal(r.releasedAt, "finish");
  assert.equal(r.hookCalls, 1);
  assert.deepEqual(
    r.info!.fields.map((f) => f.name),
    ["From", "Subject"],
  );
  assert.equal(r.info!.truncated, false);
  assert.equal(r.output, "Received: by us\r\nFrom: a@example.org\r\nSubject: only headers\r\n");
});

test("an empty message still gets the prefix", () => {
  const r = collect([]);
  assert.equal(r.output, "Received: by us\r\n");
  assert.equal(r.hookCalls, 1);
  assert.deepEqual(r.info!.fields, []);
});

test("a message starting with the blank line has no fields", () => {
  const r = collect(["\r\nbody\r\n"]);
  assert.equal(r.output, "Received: by us\r\n\r\nbody\r\n");
  assert.deepEqual(r.info!.fields, []);
});

test("limit: never holds more than maxHeaderBytes; marks truncated; drops the unfinished field", () => {
  const big = "A: 1\r\nB: " + "x".repeat(200) + "\r\n\r\nbody\r\n";
  const chunks = [...big]; // one byte at a time
  const r = collect(chunks, 64);
  assert.ok(r.maxHeldSeen <= 64, `held ${r.maxHeldSeen}`);
  assert.equal(r.hookCalls, 1);
  assert.equal(r.info!.truncated, true);
  assert.deepEqual(r.info!.fields, [{ name: "A", value: "1" }]);
  assert.equal(r.output, "Received: by us\r\n" + big);
  const oneChunk = collect([big], 64);
  assert.equal(oneChunk.output, "Received: by us\r\n" + big);
  assert.equal(oneChunk.info!.truncated, true);
});

test("limit: a header section of exactly the limit is complete", () => {
  const head = "A: 12\r\n\r\n"; // 9 bytes
  const r = collect([head + "body"], 9);
  assert.equal(r.info!.truncated, false);
  assert.deepEqual(r.info!.fields, [{ name: "A", value: "12" }]);
});

test("malformed lines are skipped and flagged; the obsolete 'Name :' form is a field", () => {
  const r = collect(["From someone Mon\r\nSubject : hi\r\n continued\r\nno colon here\r\n\r\n"]);
  assert.deepEqual(r.info!.fields, [{ name: "Subject", value: "hi continued" }]);
  assert.equal(r.info!.malformed, true);
  const leading = collect([" leading continuation\r\nA: 1\r\n\r\n"]);
  assert.equal(leading.info!.malformed, true);
  assert.deepEqual(leading.info!.fields, [{ name: "A", value: "1" }]);
});

test("UTF-8 header values (RFC 6532) are decoded", () => {
  const r = collect(["Subject: Grüße\r\n\r\n"]);
  assert.equal(r.info!.get("subject"), "Grüße");
});

test("without a hook the bytes pass unchanged", () => {
  const hc = new HeaderCollector({ maxHeaderBytes: 100 });
  const out = [...hc.push(Buffer.from("A: 1\r\n")), ...hc.push(Buffer.from("\r\nbody")), ...hc.finish()];
  assert.equal(Buffer.concat(out).toString(), "A: 1\r\n\r\nbody");
  assert.equal(hc.headerComplete, true);
});

test("a last line without a line end is a field all the same (every next hop reads it as one)", () => {
  const r = collect(["Subject: hi\r\nFrom: boss@example.org"]);
  assert.deepEqual(r.info!.getAll("from"), ["boss@example.org"]);
  assert.equal(r.output, "Received: by us\r\nSubject: hi\r\nFrom: boss@example.org");
  assert.deepEqual(collect(["Subject: hi\r\n\tmore"]).info!.getAll("subject"), ["hi\tmore"], "a last continuation line too");
});

test("names a lenient parser reads where we read no field are reported as disguised; NUL is flagged", () => {
  const run = (text: string) => collect([text + "\r\n\r\nbody"]).info!;
  assert.deepEqual(run("From\x0b: a@b").disguised, ["from"]);
  assert.deepEqual(run("Subject: x\r\nFrom\r\n : a@b").disguised, ["from"], "the colon on a continuation line (mailparser)");
  assert.deepEqual(run("Se\x00nder: a@b").disguised, ["sender"]);
  assert.equal(run("Se\x00nder: a@b").nul, true);
  assert.deepEqual(run("From : a@b\r\nX-Junk no colon\r\nSubject: s").disguised, [], "a proper field and a line without a colon disguise nothing");
  assert.equal(run("Subject: s").nul, false);
});
