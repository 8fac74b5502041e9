/**
 * MTA-STS text formats (RFC 8461): the `_mta-sts` TXT record (§3.1), the policy file parsed
 * strictly (§3.2), and MX patterns (§4.1), table by table.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mxMatches, parseMtaStsPolicy, parseMtaStsTxt } from "../../src/delivery/tls-policy/mta-sts-parse.js";

describe("parseMtaStsTxt (RFC 8461 §3.1)", () => {
  it("reads the id of the one STSv1 record and ignores other TXT records and unknown fields", () => {
    assert.deepEqual(parseMtaStsTxt(["v=STSv1; id=20160831085700Z;"]), { kind: "record", id: "20160831085700Z", record: "v=STSv1; id=20160831085700Z;" });
    assert.deepEqual(parseMtaStsTxt(["v=spf1 -all", "v=STSv1;id=abc ; ext=value"]), { kind: "record", id: "abc", record: "v=STSv1;id=abc ; ext=value" });
    // A repeated field: the first counts.
    assert.equal((parseMtaStsTxt(["v=STSv1; id=first; id=second"]) as { id: string }).id, "first");
  });

  it("no STSv1 record is no policy", () => {
    assert.deepEqual(parseMtaStsTxt([]), { kind: "none" });
    assert.deepEqual(parseMtaStsTxt(["v=spf1 -all", "v=STSv2; id=1", "xv=STSv1; id=1", "v=STSv1", "v=STSv10; id=1"]), { kind: "none" });
    // Discarded before counting: the one real record is used.
    assert.deepEqual(parseMtaStsTxt(["v=STSv1", "v=STSv1.1; id=a", "v=STSv1 ; id=good"]), { kind: "record", id: "good", record: "v=STSv1 ; id=good" });
  });

  it("two STSv1 records, a bad id or a malformed field make the record invalid", () => {
    const cases: [string[], RegExp][] = [
      [["v=STSv1; id=1", "v=STSv1; id=2"], /2 "v=STSv1" records/],
      [["v=STSv1; id=abc-def"], /id=abc-def is not 1-32/],
      [[`v=STSv1; id=${"a".repeat(33)}`], /not 1-32/],
      [["v=STSv1; id="], /malformed field/],
      [["v=STSv1;"], /no id/],
      [["v=STSv1; ext=1"], /no id/],
      [["v=STSv1; ext"], /malformed field "ext"/],
      [["v=STSv1; id=1 2"], /malformed field/],
    ];
    for (const [records, reason] of cases) {
      const r = parseMtaStsTxt(records);
      assert.equal(r.kind, "invalid", JSON.stringify(records));
      assert.match((r as { reason: string }).reason, reason);
    }
  });
});

describe("parseMtaStsPolicy (RFC 8461 §3.2)", () => {
  it("reads a policy with CRLF or LF lines, lower-cases mx, ignores unknown keys", () => {
    const crlf = "version: STSv1\r\nmode: enforce\r\nmx: MX1.Example.NET\r\nmx: *.example.net\r\nmax_age: 604800\r\n";
    assert.deepEqual(parseMtaStsPolicy(crlf), { ok: true, policy: { mode: "enforce", mx: ["mx1.example.net", "*.example.net"], maxAge: 604800 } });
    const lf = "version: STSv1\nmode: testing\nmx: mx.example.net.\nmax_age:86400\nextension_key: whatever\n\n";
    assert.deepEqual(parseMtaStsPolicy(lf), { ok: true, policy: { mode: "testing", mx: ["mx.example.net"], maxAge: 86400 } });
    // mode none needs no mx; a repeated mode keeps the first.
    assert.deepEqual(parseMtaStsPolicy("version: STSv1\nmode: none\nmode: enforce\nmax_age: 0"), { ok: true, policy: { mode: "none", mx: [], maxAge: 0 } });
    assert.equal((parseMtaStsPolicy("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557600") as { ok: boolean }).ok, true);
  });

  it("rejects whatever else", () => {
    const base = ["version: STSv1", "mode: enforce", "mx: mx.example.net", "max_age: 86400"];
    const without = (key: string) => base.filter((l) => !l.startsWith(key)).join("\n");
    const cases: [string, RegExp][] = [
      ["", /empty/],
      [without("version"), /no version/],
      [base.join("\n").replace("STSv1", "STSv2"), /version "STSv2"/],
      [without("mode"), /no mode/],
      [base.join("\n").replace("enforce", "Enforce"), /mode "Enforce"/],
      [without("max_age"), /no max_age/],
      [base.join("\n").replace("86400", "31557601"), /max_age "31557601"/],
      [base.join("\n").replace("86400", "-1"), /max_age "-1"/],
      [base.join("\n").replace("86400", "1e5"), /max_age "1e5"/],
      [without("mx"), /mode enforce without any mx/],
      [base.join("\n").replace("mx.example.net", "mx_1.example.net"), /mx "mx_1.example.net"/],
      [base.join("\n").replace("mx.example.net", "a.*.example.net"), /mx "a\.\*\.example\.net"/],
      [base.join("\n").replace("mx.example.net", "*"), /mx "\*"/],
      [`${base[0]}\n\n${base.slice(1).join("\n")}`, /line 2 is not "key: value"/],
      [base.join("\n").replace("mode: enforce", "mode = enforce"), /line 2/],
      [base.join("\n").replace("mode: enforce", "mode:"), /line 2/],
      [base.join("\n").replace("mode: enforce", "mode: enforce now"), /line 2/],
      [`<html>\n${base.join("\n")}`, /line 1/],
    ];
    for (const [text, reason] of cases) {
      const r = parseMtaStsPolicy(text);
      assert.equal(r.ok, false, JSON.stringify(text));
      assert.match((r as { reason: string }).reason, reason, JSON.stringify(text));
    }
  });
});

describe("mxMatches (RFC 8461 §4.1)", () => {
  const table: [string, string[], boolean][] = [
    ["mx.example.net", ["mx.example.net"], true],
    ["MX.Example.Net.", ["mx.example.net"], true],
    ["mx.example.net", ["MX.EXAMPLE.NET."], true],
    ["mx.example.net", ["*.example.net"], true],
    ["a.b.example.net", ["*.example.net"], false],
    ["example.net", ["*.example.net"], false],
    ["xexample.net", ["*.example.net"], false],
    ["mx.example.net", ["example.net"], false],
    ["mx.example.org", ["mx.example.net", "*.example.org"], true],
    ["mx2.example.net", ["mx1.example.net"], false],
    ["mx.example.net", [], false],
  ];
  for (const [host, patterns, expected] of table)
    it(`${host} ${expected ? "matches" : "does not match"} ${patterns.join(", ") || "(nothing)"}`, () => assert.equal(mxMatches(host, patterns), expected));
});
