/**
 * Loads the YAML config and validates it, reporting every problem with its key and line.
 * Relative paths are resolved against the config file's folder, so a config works from any cwd.
 */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { LineCounter, parseDocument, isNode } from "yaml";
import type { z } from "zod";
import { configSchema, type Config } from "./schema.js";

export class ConfigError extends Error {
  constructor(
    message: string,
    readonly problems: string[],
  ) {
    super(message);
    this.name = "ConfigError";
  }
}

export function loadConfigFile(path: string): Config {
  const text = readFileSync(path, "utf8");
  return parseConfigText(text, path);
}

export function parseConfigText(text: string, path = "<config>"): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => `${path}: ${e.message}`);
    throw new ConfigError(`invalid YAML in ${path}`, problems);
  }
  const raw = doc.toJS() ?? {};
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => describeIssue(issue, doc, lineCounter, path));
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

function describeIssue(
  issue: z.core.$ZodIssue,
  doc: ReturnType<typeof parseDocument>,
  lines: LineCounter,
  path: string,
): string {
  const key = issue.path.join(".") || "(root)";
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
  };
}
