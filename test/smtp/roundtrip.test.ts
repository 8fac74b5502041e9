/**
 * Parse → serialize round-trips (the fuzzing half of SECURITY.md rules 6 and 8): what the path
 * parser and the ESMTP parameter parsers accept, they give back exactly; their canonical output
 * parses to itself; xtext encoding is lossless and its decoding never lets a CR or LF through.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { parsePath, parseMailParams, parseRcptParams, encodeXtext, decodeXtext, type MailParams, type RcptParams } from "../../src/smtp/address.js";
import type { NotifyCondition } from "../../src/smtp/esmtp-params.js";
import { runs } from "./fuzz-config.js";

const ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~";
const atom = fc.string({ unit: fc.constantFrom(...ATEXT), minLength: 1, maxLength: 10 });
const dotString = fc.array(atom, { minLength: 1, maxLength: 3 }).map((a) => a.join("."));
const label = fc
  .string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"), minLength: 1, maxLength: 12 })
  .filter((l) => !l.startsWith("-") && !l.endsWith("-") && !/^..--/.test(l));
const domain = fc.array(label, { minLength: 2, maxLength: 4 }).map((l) => l.join("."));
/** qtextSMTP and quoted pairs, never "@" (SECURITY.md rule 7 refuses it inside quotes). */
const quotedContent = fc.string({ unit: fc.constantFrom(...' abc.,;:()[]<>\\"xyz'), minLength: 1, maxLength: 12 });
const quoted = quotedContent.map((c) => `"${c.replace(/[\\"]/g, (m) => `\\${m}`)}"`);

test("round-trip: a dot-string address parses to itself (domain lower-cased) and its form is stable", () => {
  fc.assert(
    fc.property(dotString, domain, fc.boolean(), (local, dom, trailingDot) => {
      const r = parsePath(`<${local}@${dom}${trailingDot ? "." : ""}>`, { allowNull: false, allowUtf8: false });
      assert.ok(r.ok, `refused <${local}@${dom}>`);
      assert.equal(r.path.address, `${local}@${dom.toLowerCase()}`);
      const again = parsePath(`<${r.path.address}>`, { allowNull: false, allowUtf8: false });
      assert.ok(again.ok);
      assert.deepEqual(again.path, r.path);
    }),
    { numRuns: runs(500) },
  );
});

test("round-trip: quoted local parts canonicalise once, then stay the same", () => {
  fc.assert(
    fc.property(quoted, domain, (local, dom) => {
      const r = parsePath(`<${local}@${dom}>`, { allowNull: false, allowUtf8: false });
      assert.ok(r.ok, `refused <${local}@${dom}>`);
      const again = parsePath(`<${r.path.address}>`, { allowNull: false, allowUtf8: false });
      assert.ok(again.ok, `canonical form refused: ${r.path.address}`);
      assert.equal(again.path.address, r.path.address);
      assert.equal(again.path.localPart, r.path.localPart);
    }),
    { numRuns: runs(500) },
  );
});

test("round-trip: a source route is dropped and the final hop kept", () => {
  fc.assert(
    fc.property(fc.array(domain, { minLength: 1, maxLength: 3 }), dotString, domain, (hops, local, dom) => {
      const r = parsePath(`<${hops.map((h) => "@" + h).join(",")}:${local}@${dom}>`, { allowNull: false, allowUtf8: false });
      assert.ok(r.ok);
      assert.equal(r.path.sourceRoute, true);
      assert.equal(r.path.address, `${local}@${dom.toLowerCase()}`);
    }),
    { numRuns: runs(300) },
  );
});

test("parsePath never throws and an accepted address holds no control character, '<', '>' or second '@' outside quotes", () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 80 }), fc.boolean(), (text, utf8) => {
      const r = parsePath(`<${text}>`, { allowNull: true, allowUtf8: utf8 });
      if (!r.ok) return;
      assert.doesNotMatch(r.path.address, /[\x00-\x1f\x7f<>]/);
      const unquoted = r.path.address.replace(/^"(?:[^"\\]|\\.)*"/, "Q");
      assert.ok((unquoted.match(/@/g) ?? []).length <= 1, r.path.address);
    }),
    { numRuns: runs(1000) },
  );
});

/** Visible text without control characters (what ENVID and ORCPT carry once decoded). */
const printable = fc.string({ unit: "binary", minLength: 1, maxLength: 30 }).filter((s) => !/[\x00-\x1f\x7f]/.test(s));

test("round-trip: xtext encodes any text losslessly", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 40 }), (text) => {
      const enc = encodeXtext(text);
      assert.match(enc, /^[\x21-\x7e]*$/);
      assert.equal(decodeXtext(enc), text);
    }),
    { numRuns: runs(1000) },
  );
});

const mailParams: fc.Arbitrary<MailParams> = fc.record(
  {
    size: fc.nat({ max: 2 ** 40 }),
    body: fc.constantFrom("7BIT" as const, "8BITMIME" as const),
    smtputf8: fc.constant(true),
    ret: fc.constantFrom("FULL" as const, "HDRS" as const),
    envid: printable.filter((s) => encodeXtext(s).length <= 100),
  },
  { requiredKeys: [] },
);

function serializeMail(p: MailParams): string {
  const out: string[] = [];
  if (p.size !== undefined) out.push(`SIZE=${p.size}`);
  if (p.body) out.push(`BODY=${p.body}`);
  if (p.smtputf8) out.push("SMTPUTF8");
  if (p.ret) out.push(`RET=${p.ret}`);
  if (p.envid !== undefined) out.push(`ENVID=${encodeXtext(p.envid)}`);
  return out.join(" ");
}

test("round-trip: MAIL parameters serialize and parse back to the same values", () => {
  const allowed = { size: true, eightBitMime: true, smtputf8: true, dsn: true, auth: false };
  fc.assert(
    fc.property(mailParams, fc.boolean(), (p, lower) => {
      const text = serializeMail(p);
      const r = parseMailParams(lower ? text.replace(/^\w+|(?<= )\w+/g, (k) => k.toLowerCase()) : text, allowed);
      assert.ok(r.ok, text);
      assert.deepEqual(r.value, { ...p });
    }),
    { numRuns: runs(500) },
  );
});

const rcptParams: fc.Arbitrary<RcptParams> = fc.record(
  {
    notify: fc.oneof(
      fc.constant<NotifyCondition[]>(["NEVER"]),
      fc.uniqueArray(fc.constantFrom("SUCCESS" as const, "FAILURE" as const, "DELAY" as const), { minLength: 1 }),
    ),
    orcpt: fc.record({ addrType: fc.constantFrom("rfc822", "RFC822", "utf-8"), address: printable }),
  },
  { requiredKeys: [] },
);

test("round-trip: RCPT parameters serialize and parse back; decoded CR/LF never passes", () => {
  fc.assert(
    fc.property(rcptParams, (p) => {
      const parts: string[] = [];
      if (p.notify) parts.push(`NOTIFY=${p.notify.join(",")}`);
      if (p.orcpt) parts.push(`ORCPT=${p.orcpt.addrType};${encodeXtext(p.orcpt.address)}`);
      const r = parseRcptParams(parts.join(" "), { dsn: true });
      assert.ok(r.ok, parts.join(" "));
      assert.deepEqual(r.value, structuredClone({ ...p, ...(p.orcpt ? { orcpt: { ...p.orcpt } } : {}) }));
      if (p.orcpt) {
        const injected = parseRcptParams(`ORCPT=rfc822;${encodeXtext(p.orcpt.address + "\r\nBcc: x")}`, { dsn: true });
        assert.equal(injected.ok, false);
      }
    }),
    { numRuns: runs(500) },
  );
});
