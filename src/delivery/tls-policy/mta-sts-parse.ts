/**
 * MTA-STS (RFC 8461) text formats, parsed strictly: the `_mta-sts` TXT record (§3.1), the policy
 * file (§3.2), and the match of an MX host against the policy's "mx" patterns (§4.1). No I/O here.
 */
import type { MtaStsPolicy } from "./types.js";

/** RFC 8461 §3.2: max_age is at most 31557600 seconds (about a year). */
export const MTA_STS_MAX_AGE_LIMIT = 31_557_600;

/** What the `_mta-sts.DOMAIN` TXT records say. */
export type MtaStsTxt =
  /** No record beginning with "v=STSv1": the domain has no MTA-STS. */
  | { kind: "none" }
  | { kind: "record"; id: string; record: string }
  /** Several STSv1 records, or one that does not parse: §3.1 says treat the domain as having no policy. */
  | { kind: "invalid"; reason: string };

// §3.1 ABNF: sts-field-delim = *WSP ";" *WSP; extension names and values.
const TXT_EXTENSION = /^([A-Za-z0-9][A-Za-z0-9_.-]{0,31})=([\x21-\x3a\x3c\x3e-\x7e]+)$/;

/**
 * The `_mta-sts` TXT records (each one's character-strings already joined) → the policy id.
 * §3.1: records not beginning with "v=STSv1;" are discarded (before counting); more than one left, or one that is
 * malformed, means no usable record. `id` is 1–32 letters and digits; unknown fields are ignored.
 */
export function parseMtaStsTxt(records: string[]): MtaStsTxt {
  // "v=STSv1;" (the ABNF lets WSP precede the ";"); "v=STSv1" alone or "v=STSv10;" is discarded.
  const sts = records.filter((r) => /^v=STSv1[ \t]*;/.test(r));
  if (sts.length === 0) return { kind: "none" };
  if (sts.length > 1) return { kind: "invalid", reason: `${sts.length} "v=STSv1" records (RFC 8461 §3.1 allows exactly one)` };
  const record = sts[0]!;
  const fields = record.split(/[ \t]*;[ \t]*/);
  if (fields[fields.length - 1] === "") fields.pop(); // a trailing ";" is allowed
  let id: string | undefined;
  for (const field of fields.slice(1)) {
    const m = TXT_EXTENSION.exec(field);
    if (!m) return { kind: "invalid", reason: `malformed field ${JSON.stringify(field)}` };
    // §3.1: a duplicated field: all but the first are ignored.
    if (m[1] === "id" && id === undefined) {
      if (!/^[A-Za-z0-9]{1,32}$/.test(m[2]!)) return { kind: "invalid", reason: `id=${m[2]} is not 1-32 letters and digits` };
      id = m[2]!;
    }
  }
  if (id === undefined) return { kind: "invalid", reason: "no id= field" };
  return { kind: "record", id, record };
}

/** A policy file's fields (§3.2), without the id and fetch time a cached MtaStsPolicy adds. */
export type ParsedMtaStsPolicy = Pick<MtaStsPolicy, "mode" | "mx" | "maxAge">;

export type MtaStsPolicyParse = { ok: true; policy: ParsedMtaStsPolicy } | { ok: false; reason: string };

// RFC 5321 §4.1.2 Domain: labels of letters, digits and inner hyphens.
const LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
const MX_PATTERN = new RegExp(`^(?:\\*\\.)?${LABEL}(?:\\.${LABEL})+\\.?$`);

/**
 * The policy file body (§3.2), strictly: lines end in LF or CRLF, each `key: value` (*WSP after
 * the colon and at the end), keys case-sensitive. Required: `version: STSv1`, `mode` (enforce,
 * testing, none), `max_age` (integer seconds ≤ 31557600), and at least one `mx` unless the mode
 * is none. Unknown keys are ignored; a repeated key other than mx keeps its first value (§3.2).
 * Blank lines are accepted only at the end (servers often add one); anything else fails.
 * The field order is not checked: the RFC's grammar does not fix one.
 */
export function parseMtaStsPolicy(text: string): MtaStsPolicyParse {
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && /^[ \t]*$/.test(lines[lines.length - 1]!)) lines.pop();
  if (lines.length === 0) return { ok: false, reason: "empty policy" };
  const first = new Map<string, string>();
  const mx: string[] = [];
  for (const [i, line] of lines.entries()) {
    const m = /^([A-Za-z0-9][A-Za-z0-9_.-]{0,31}):[ \t]*(.*?)[ \t]*$/.exec(line);
    if (!m || m[2] === "" || !/^[\x21-\x7e]+$/.test(m[2]!))
      return { ok: false, reason: `line ${i + 1} is not "key: value": ${JSON.stringify(line.slice(0, 80))}` };
    const [, key, value] = m as unknown as [string, string, string];
    if (key === "mx") {
      if (!MX_PATTERN.test(value)) return { ok: false, reason: `mx ${JSON.stringify(value)} is not a host name or *.domain pattern` };
      mx.push(value.toLowerCase().replace(/\.$/, ""));
    } else if (!first.has(key)) first.set(key, value);
  }
  const version = first.get("version");
  if (version !== "STSv1") return { ok: false, reason: version === undefined ? "no version field" : `version ${JSON.stringify(version)} is not STSv1` };
  const mode = first.get("mode");
  if (mode !== "enforce" && mode !== "testing" && mode !== "none")
    return { ok: false, reason: mode === undefined ? "no mode field" : `mode ${JSON.stringify(mode)} is not enforce, testing or none` };
  const maxAgeText = first.get("max_age");
  if (maxAgeText === undefined) return { ok: false, reason: "no max_age field" };
  // §3.2: sts-policy-max-age-value = 1*10(DIGIT), at most 31557600.
  if (!/^\d{1,10}$/.test(maxAgeText) || Number(maxAgeText) > MTA_STS_MAX_AGE_LIMIT)
    return { ok: false, reason: `max_age ${JSON.stringify(maxAgeText)} is not an integer of at most ${MTA_STS_MAX_AGE_LIMIT}` };
  if (mx.length === 0 && mode !== "none") return { ok: false, reason: `mode ${mode} without any mx field` };
  return { ok: true, policy: { mode, mx, maxAge: Number(maxAgeText) } };
}

/**
 * Whether an MX host is allowed by a policy's "mx" patterns (§4.1): without case, the trailing dot
 * ignored; "*.example.net" stands for exactly one more leftmost label (mx.example.net, but neither
 * example.net nor a.b.example.net).
 */
export function mxMatches(host: string, patterns: readonly string[]): boolean {
  const name = host.toLowerCase().replace(/\.$/, "");
  return patterns.some((raw) => {
    const pattern = raw.toLowerCase().replace(/\.$/, "");
    if (!pattern.startsWith("*.")) return name === pattern;
    const suffix = pattern.slice(1); // ".example.net"
    if (!name.endsWith(suffix)) return false;
    const label = name.slice(0, -suffix.length);
    return label !== "" && !label.includes(".");
  });
}
