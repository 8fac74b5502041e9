/**
 * RFC 8460 §4.4's JSON schema, written out as a checker: every required field present with its
 * type, RFC 3339 date-times, non-negative integer counts, result-type from §4.3, no unknown
 * fields. Returns the problems found (none: the report conforms).
 */

export const RESULT_TYPES = [
  "starttls-not-supported",
  "certificate-host-mismatch",
  "certificate-expired",
  "certificate-not-trusted",
  "validation-failure",
  "tlsa-invalid",
  "dnssec-invalid",
  "dane-required",
  "sts-policy-fetch-error",
  "sts-policy-invalid",
  "sts-webpki-invalid",
];

// RFC 3339 §5.6 date-time.
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

export function schemaProblems(report: unknown): string[] {
  const problems: string[] = [];
  const need = (ok: boolean, what: string) => {
    if (!ok) problems.push(what);
  };
  const onlyKeys = (o: Record<string, unknown>, allowed: string[], where: string) => {
    for (const k of Object.keys(o)) need(allowed.includes(k), `${where}: unknown field ${k}`);
  };
  const str = (o: Record<string, unknown>, k: string, where: string, required = true) => {
    if (!(k in o)) return need(!required, `${where}.${k} missing`);
    need(typeof o[k] === "string" && (o[k] as string).length > 0, `${where}.${k} not a non-empty string`);
  };
  const count = (o: Record<string, unknown>, k: string, where: string) =>
    need(Number.isInteger(o[k]) && (o[k] as number) >= 0, `${where}.${k} not a non-negative integer`);

  if (!isObject(report)) return ["report is not an object"];
  onlyKeys(report, ["organization-name", "date-range", "contact-info", "report-id", "policies"], "report");
  str(report, "organization-name", "report");
  str(report, "contact-info", "report");
  str(report, "report-id", "report");
  const range = report["date-range"];
  if (!isObject(range)) problems.push("date-range missing");
  else {
    onlyKeys(range, ["start-datetime", "end-datetime"], "date-range");
    for (const k of ["start-datetime", "end-datetime"]) need(typeof range[k] === "string" && RFC3339.test(range[k] as string), `date-range.${k} not RFC 3339`);
    need(Date.parse(range["start-datetime"] as string) < Date.parse(range["end-datetime"] as string), "date-range: start not before end");
  }
  const policies = report.policies;
  if (!Array.isArray(policies) || policies.length === 0) return [...problems, "policies not a non-empty array"];
  for (const [i, p] of policies.entries()) {
    const where = `policies[${i}]`;
    if (!isObject(p)) {
      problems.push(`${where} not an object`);
      continue;
    }
    onlyKeys(p, ["policy", "summary", "failure-details"], where);
    const pol = p.policy;
    if (!isObject(pol)) problems.push(`${where}.policy missing`);
    else {
      onlyKeys(pol, ["policy-type", "policy-string", "policy-domain", "mx-host"], `${where}.policy`);
      need(["tlsa", "sts", "no-policy-found"].includes(pol["policy-type"] as string), `${where}.policy.policy-type invalid`);
      str(pol, "policy-domain", `${where}.policy`);
      if ("policy-string" in pol)
        need(Array.isArray(pol["policy-string"]) && pol["policy-string"].every((s) => typeof s === "string"), `${where}.policy.policy-string not strings`);
      if ("mx-host" in pol) need(Array.isArray(pol["mx-host"]) && pol["mx-host"].every((s) => typeof s === "string"), `${where}.policy.mx-host not strings`);
    }
    const summary = p.summary;
    if (!isObject(summary)) problems.push(`${where}.summary missing`);
    else {
      onlyKeys(summary, ["total-successful-session-count", "total-failure-session-count"], `${where}.summary`);
      count(summary, "total-successful-session-count", `${where}.summary`);
      count(summary, "total-failure-session-count", `${where}.summary`);
    }
    if (!("failure-details" in p)) continue;
    const details = p["failure-details"];
    if (!Array.isArray(details)) {
      problems.push(`${where}.failure-details not an array`);
      continue;
    }
    let sum = 0;
    for (const [j, d] of details.entries()) {
      const w = `${where}.failure-details[${j}]`;
      if (!isObject(d)) {
        problems.push(`${w} not an object`);
        continue;
      }
      onlyKeys(
        d,
        [
          "result-type",
          "sending-mta-ip",
          "receiving-mx-hostname",
          "receiving-mx-helo",
          "receiving-ip",
          "failed-session-count",
          "additional-information",
          "failure-reason-code",
        ],
        w,
      );
      need(RESULT_TYPES.includes(d["result-type"] as string), `${w}.result-type ${String(d["result-type"])} not in RFC 8460 §4.3`);
      count(d, "failed-session-count", w);
      sum += d["failed-session-count"] as number;
      for (const k of ["sending-mta-ip", "receiving-mx-hostname", "receiving-mx-helo", "receiving-ip", "failure-reason-code"]) str(d, k, w, false);
      if ("additional-information" in d)
        need(
          typeof d["additional-information"] === "string" && /^[a-z][a-z0-9+.-]*:/i.test(d["additional-information"]),
          `${w}.additional-information not a URI`,
        );
    }
    if (isObject(summary)) need(sum === summary["total-failure-session-count"], `${where}: failed-session-counts do not add up to the failure total`);
  }
  return problems;
}
