/**
 * Loads the YAML config and validates it, reporting every problem with its key and line.
 * Relative paths are resolved against the config file's folder, so a config works from any cwd.
 */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { LineCounter, parseDocument, isMap, isNode, isScalar } from "yaml";
import type { z } from "zod";
import { configSchema, type Config } from "./schema.js";

export class ConfigError extends Error {
  constructor(
    message: string,
    readonly problems: string[],
    /** The errno code when the file itself could not be read (ENOENT, EACCES). */
    readonly code?: string,
  ) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Reads the file, or throws a ConfigError that says why not (missing, not readable by this user). */
export function readConfigText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "does not exist" : code === "EACCES" ? "is not readable by this user" : String((err as Error).message);
    throw new ConfigError(`cannot read the configuration: ${path} ${why}`, [], code);
  }
}

export function loadConfigFile(path: string): Config {
  return parseConfigText(readConfigText(path), path);
}

export function parseConfigText(text: string, path = "<config>"): Config {
  const lineCounter = new LineCounter();
  // Not prettyErrors: its excerpt of the offending line could print a password.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => {
      const { line, col } = lineCounter.linePos(e.pos[0]);
      return `${path}:${line}:${col}: ${e.message.split("\n")[0]}`;
    });
    throw new ConfigError(`invalid YAML in ${path}`, problems);
  }
  const raw = doc.toJS() ?? {};
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.flatMap((issue) => describeIssue(issue, doc, lineCounter, path).split("\n"));
    throw new ConfigError(`invalid configuration in ${path}`, problems);
  }
  return resolvePaths(result.data, path === "<config>" ? process.cwd() : dirname(resolve(path)));
}

/** Validates an in-memory object (used for the embedded demo config). */
export function parseConfigObject(raw: unknown, baseDir: string): Config {
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    throw new ConfigError(
      "invalid configuration",
      result.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`),
    );
  }
  return resolvePaths(result.data, baseDir);
}

function describeIssue(issue: z.core.$ZodIssue, doc: ReturnType<typeof parseDocument>, lines: LineCounter, path: string): string {
  const key = issue.path.join(".") || "(root)";
  if (issue.code === "unrecognized_keys") return issue.keys.map((k) => describeUnknownKey(issue.path as PropertyKey[], k, doc, lines, path)).join("\n");
  // Walk up the path until a node with a source range is found: a missing key points at its parent.
  for (let depth = issue.path.length; depth >= 0; depth--) {
    const node = doc.getIn(issue.path.slice(0, depth) as (string | number)[], true);
    if (isNode(node) && node.range) {
      const { line, col } = lines.linePos(node.range[0]);
      return `${path}:${line}:${col}: ${key}: ${issue.message}`;
    }
  }
  return `${path}: ${key}: ${issue.message}`;
}

/** `postern.yaml:3:1: unknown key `domian` — did you mean `domains`?`, at the key's own line. */
function describeUnknownKey(at: PropertyKey[], unknown: string, doc: ReturnType<typeof parseDocument>, lines: LineCounter, path: string): string {
  const dotted = [...at, unknown].join(".");
  const suggestion = closestKey(unknown, knownKeysAt(configSchema, at));
  const hint = suggestion ? ` — did you mean \`${suggestion}\`?` : "";
  const parent = doc.getIn(at as (string | number)[], true);
  let where = path;
  if (isMap(parent)) {
    const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === unknown);
    const node = pair && isNode(pair.key) ? pair.key : parent;
    if (node.range) {
      const { line, col } = lines.linePos(node.range[0]);
      where = `${path}:${line}:${col}`;
    }
  }
  return `${where}: ${dotted}: unknown key \`${unknown}\`${hint}`;
}

/** The keys the schema allows at `path` (objects inside defaults, optionals, records and arrays). */
export function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  type Def = {
    type: string;
    shape?: Record<string, z.ZodType>;
    innerType?: z.ZodType;
    in?: z.ZodType;
    valueType?: z.ZodType;
    element?: z.ZodType;
    options?: z.ZodType[];
  };
  const defOf = (s: z.ZodType) => (s as unknown as { _zod: { def: Def } })._zod.def;
  const unwrap = (s: z.ZodType): z.ZodType[] => {
    const def = defOf(s);
    if (def.innerType) return unwrap(def.innerType);
    if (def.type === "pipe" && def.in) return unwrap(def.in);
    if (def.type === "union" && def.options) return def.options.flatMap(unwrap);
    return [s];
  };
  let current = unwrap(schema);
  for (const segment of path) {
    current = current.flatMap((s) => {
      const def = defOf(s);
      if (def.type === "object" && def.shape && typeof segment === "string" && def.shape[segment]) return unwrap(def.shape[segment]);
      if (def.type === "record" && def.valueType) return unwrap(def.valueType);
      if (def.type === "array" && def.element) return unwrap(def.element);
      return [];
    });
  }
  return [...new Set(current.flatMap((s) => Object.keys(defOf(s).shape ?? {})))];
}

/** The nearest valid key by edit distance (or letter case), if near enough to be a typo. */
export function closestKey(word: string, candidates: readonly string[]): string | undefined {
  let best: { key: string; distance: number } | undefined;
  for (const key of candidates) {
    const [w, k] = [word.toLowerCase(), key.toLowerCase()];
    // "relayhost" → "relay": a valid key with something stuck to it counts as one edit.
    const distance = w === k ? 0 : k.length >= 4 && (w.startsWith(k) || k.startsWith(w)) ? 1 : editDistance(w, k);
    if (!best || distance < best.distance) best = { key, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(word.length / 3)) ? best.key : undefined;
}

/** Damerau–Levenshtein (optimal string alignment): a swapped pair of letters counts as one edit. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

function resolvePaths(config: Config, baseDir: string): Config {
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  return {
    ...config,
    dataDir: abs(config.dataDir),
    tls: {
      ...config.tls,
      cert: config.tls.cert === undefined ? undefined : abs(config.tls.cert),
      key: config.tls.key === undefined ? undefined : abs(config.tls.key),
    },
    delivery: { ...config.delivery, maildir: abs(config.delivery.maildir) },
    ...(config.auth.oauth?.caFile ? { auth: { ...config.auth, oauth: { ...config.auth.oauth, caFile: abs(config.auth.oauth.caFile) } } } : {}),
  };
}
