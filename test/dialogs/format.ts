/**
 * The dialog-script format: hostile SMTP conversations as data (test/dialogs/*.txt), in the spirit
 * of chasquid's .cmy files and OpenSMTPD's smtpscript. See test/dialogs/README.md for the syntax.
 * This file only parses; dialogs.test.ts runs the steps against the real `postern serve`.
 */
import { isListenerMode, type ListenerMode } from "../../src/base/listener-mode.js";

export type Listener = ListenerMode;

export type Step =
  | { kind: "connect"; listener: Listener; line: number }
  /** One write() of exactly these bytes. */
  | { kind: "send"; bytes: Buffer; line: number }
  /** The next reply must match; `pattern` is anchored at the start of the reply text. */
  | { kind: "expect"; pattern: RegExp; line: number }
  /** The last reply read contains (or, negated, does not contain) the pattern. */
  | { kind: "contains"; pattern: RegExp; negated: boolean; line: number }
  | { kind: "silent"; ms: number; line: number }
  | { kind: "closed"; line: number }
  | { kind: "starttls"; line: number }
  | { kind: "pause"; ms: number; line: number }
  | { kind: "close"; line: number }
  /** The message last answered "queued as <id>" reaches this recipient, with this content. */
  | { kind: "delivered"; recipient: string; content: DeliveredContent; line: number }
  /** The server logged a line with these fields (so far, or within the reply timeout). */
  | { kind: "logged"; fields: LogFieldMatch[]; line: number };

/** One field of an expected log line: equal to a JSON value, or (a key written "name~") matching a regex. */
export type LogFieldMatch = { field: string; equals: unknown } | { field: string; pattern: RegExp };

/**
 * What a delivered message must hold. `message`: the message as the client meant it, exactly: the
 * delivered bytes are the trace fields the server adds on top (Received:, Return-Path:, ...) and
 * then these bytes. `patterns`: regexes the whole delivered message (trace fields included) must
 * match, or with `negated`, must not.
 */
export interface DeliveredContent {
  message: Buffer | null;
  patterns: { pattern: RegExp; negated: boolean }[];
}

export interface Dialog {
  name: string;
  steps: Step[];
}

export interface DialogFile {
  /** Objects from `@config` lines, deep-merged over the runner's base config in order. */
  config: Record<string, unknown>[];
  users: { address: string; password: string; senders: string[] }[];
  dialogs: Dialog[];
}

export class DialogSyntaxError extends Error {
  constructor(file: string, line: number, message: string) {
    super(`${file}:${line}: ${message}`);
  }
}

/** Parses a whole dialog file. `file` is used in error messages only. */
export function parseDialogFile(text: string, file = "dialog"): DialogFile {
  const result: DialogFile = { config: [], users: [], dialogs: [] };
  const lines = text.split("\n").map((l) => l.replace(/\r$/, ""));
  let current: Dialog | null = null;
  /** Open `repeat` blocks: where their steps start, and how often to repeat them. */
  const repeats: { count: number; start: number; line: number }[] = [];
  /** An open `{ ... }` group: its pieces go out in one write. */
  let group: { pieces: Buffer[]; line: number } | null = null;
  const fail = (n: number, msg: string): never => {
    throw new DialogSyntaxError(file, n, msg);
  };

  // biome-ignore lint/suspicious/useIterableCallbackReturn: each line is one callback; `return fail(…)` throws, a bare return ends the line
  lines.forEach((raw, i) => {
    const n = i + 1;
    const line = raw.trimStart();
    if (line === "" || line.startsWith("#")) return;
    if (line.startsWith("@")) {
      if (current) fail(n, "header lines (@config, @user) go before the first dialog");
      const [word, ...rest] = line.split(" ");
      if (word === "@config") {
        try {
          result.config.push(JSON.parse(rest.join(" ")) as Record<string, unknown>);
        } catch (err) {
          fail(n, `@config needs a JSON object: ${String(err)}`);
        }
      } else if (word === "@user" && rest.length >= 2) {
        result.users.push({ address: rest[0]!, password: rest[1]!, senders: rest.slice(2) });
      } else {
        fail(n, `unknown header ${word}`);
      }
      return;
    }
    if (line.startsWith("== ")) {
      if (repeats.length > 0 || group) fail(n, "a dialog ends inside a repeat or { } block");
      current = { name: line.slice(3).trim(), steps: [] };
      result.dialogs.push(current);
      return;
    }
    if (!current) return fail(n, "a step outside any dialog (start one with '== name')");
    const steps: Step[] = current.steps;

    // Sending: "> text" adds CRLF, ">> bytes" sends exactly what is written (escapes expanded).
    const send = /^(>>?)(?: (.*))?$/.exec(line);
    if (send) {
      let bytes: Buffer;
      try {
        bytes = expand(send[2] ?? "");
      } catch (err) {
        return fail(n, (err as Error).message);
      }
      if (send[1] === ">") bytes = Buffer.concat([bytes, Buffer.from("\r\n")]);
      if (group) group.pieces.push(bytes);
      else steps.push({ kind: "send", bytes, line: n });
      return;
    }
    if (group && line !== "}") return fail(n, "only > and >> lines may stand inside { }");

    // Delivered content: "| text" (CRLF added), "|| bytes" (exactly), "|~ regex", "|!~ regex".
    const content = /^\|(\||~|!~)?(?: (.*))?$/.exec(line);
    if (content) {
      const last = steps[steps.length - 1];
      if (last?.kind !== "delivered") return fail(n, "| lines follow a 'delivered' step");
      const [, how, text = ""] = content;
      if (how === "~" || how === "!~") {
        last.content.patterns.push({ pattern: regex(text, n, fail), negated: how === "!~" });
        return;
      }
      let bytes: Buffer;
      try {
        bytes = expand(text);
      } catch (err) {
        return fail(n, (err as Error).message);
      }
      if (how !== "|") bytes = Buffer.concat([bytes, Buffer.from("\r\n")]);
      last.content.message = Buffer.concat([last.content.message ?? Buffer.alloc(0), bytes]);
      return;
    }

    const [word, ...args] = line.split(/\s+/);
    const rest = line.slice(word!.length).trim();
    const ms = () => {
      const v = Number(args[0]);
      if (!Number.isInteger(v) || v < 0) fail(n, `${word} needs a number of milliseconds`);
      return v;
    };
    switch (word) {
      case "{":
        group = { pieces: [], line: n };
        return;
      case "}":
        if (!group) return fail(n, "} without {");
        steps.push({ kind: "send", bytes: Buffer.concat(group.pieces), line: group.line });
        group = null;
        return;
      case "<":
        steps.push({ kind: "expect", pattern: regex(rest, n, fail, "^(?:", ")"), line: n });
        return;
      case "~":
      case "!~":
        steps.push({ kind: "contains", pattern: regex(rest, n, fail), negated: word === "!~", line: n });
        return;
      case "connect": {
        const listener = args[0] ?? "mta";
        if (!isListenerMode(listener)) return fail(n, `unknown listener ${listener}`);
        steps.push({ kind: "connect", listener, line: n });
        return;
      }
      case "silent":
        steps.push({ kind: "silent", ms: ms(), line: n });
        return;
      case "pause":
        steps.push({ kind: "pause", ms: ms(), line: n });
        return;
      case "delivered":
        if (!/^[^\s<>]+@[^\s<>]+$/.test(rest)) fail(n, "delivered needs one recipient address (no < >)");
        steps.push({ kind: "delivered", recipient: rest, content: { message: null, patterns: [] }, line: n });
        return;
      case "logged": {
        let fields: Record<string, unknown> = {};
        try {
          fields = JSON.parse(rest) as Record<string, unknown>;
        } catch (err) {
          fail(n, `logged needs a JSON object: ${String(err)}`);
        }
        const matches = Object.entries(fields).map(
          ([key, value]): LogFieldMatch =>
            key.endsWith("~") ? { field: key.slice(0, -1), pattern: regex(String(value), n, fail) } : { field: key, equals: value },
        );
        steps.push({ kind: "logged", fields: matches, line: n });
        return;
      }
      case "closed":
      case "starttls":
      case "close":
        steps.push({ kind: word, line: n });
        return;
      case "repeat": {
        const count = Number(args[0]);
        if (!Number.isInteger(count) || count < 1) fail(n, "repeat needs a count");
        repeats.push({ count, start: steps.length, line: n });
        return;
      }
      case "end": {
        const r = repeats.pop();
        if (!r) return fail(n, "end without repeat");
        const body = steps.splice(r.start);
        for (let k = 0; k < r.count; k++) steps.push(...body);
        return;
      }
      default:
        fail(n, `unknown step: ${line}`);
    }
  });
  if (repeats.length > 0) fail(repeats[0]!.line, "repeat without end");
  if (group) fail((group as { line: number }).line, "{ without }");
  for (const d of result.dialogs) {
    if (d.steps[0]?.kind !== "connect") d.steps.unshift({ kind: "connect", listener: "mta", line: 0 });
  }
  return result;
}

function regex(source: string, n: number, fail: (n: number, m: string) => never, pre = "", post = ""): RegExp {
  if (source === "") fail(n, "a pattern is needed");
  try {
    return new RegExp(pre + source + post, "s");
  } catch (err) {
    return fail(n, `bad pattern: ${(err as Error).message}`);
  }
}

/**
 * Expands the escapes of a send line into bytes:
 *   \r \n \t \0 \\ \$ and \xHH — exact octets (\x80-\xff are single bytes, not UTF-8)
 *   $(N*text)  — text (itself expanded) N times, e.g. $(600*a) or $(101*Received: x\r\n)
 *   $(b64:text) — base64 of the expanded text, e.g. $(b64:\0user\0password)
 *   $(bdat:text), $(bdat-last:text) — "BDAT <octets>[ LAST]\r\n" and then the expanded text, so a
 *               chunk's size is always right: $(bdat-last:Subject: x\r\n\r\nbody\r\n)
 * Everything else is taken as UTF-8.
 */
export function expand(text: string): Buffer {
  const out: Buffer[] = [];
  let plain = "";
  const flush = () => {
    if (plain) out.push(Buffer.from(plain, "utf8"));
    plain = "";
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "\\") {
      const e = text[++i];
      const simple: Record<string, number> = { r: 0x0d, n: 0x0a, t: 0x09, "0": 0x00, "\\": 0x5c, $: 0x24 };
      if (e !== undefined && e in simple) {
        flush();
        out.push(Buffer.from([simple[e]!]));
      } else if (e === "x" && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 1, i + 3))) {
        flush();
        out.push(Buffer.from([parseInt(text.slice(i + 1, i + 3), 16)]));
        i += 2;
      } else {
        throw new Error(`unknown escape \\${e ?? ""}`);
      }
    } else if (c === "$" && text[i + 1] === "(") {
      const close = matchingParen(text, i + 1);
      const inner = text.slice(i + 2, close);
      flush();
      const rep = /^(\d+)\*/.exec(inner);
      if (rep) out.push(Buffer.concat(Array<Buffer>(Number(rep[1])).fill(expand(inner.slice(rep[0].length)))));
      else if (inner.startsWith("b64:")) out.push(Buffer.from(expand(inner.slice(4)).toString("base64")));
      else if (/^bdat(-last)?:/.test(inner)) {
        const last = inner.startsWith("bdat-last:");
        const chunk = expand(inner.slice(last ? 10 : 5));
        out.push(Buffer.from(`BDAT ${chunk.length}${last ? " LAST" : ""}\r\n`), chunk);
      } else throw new Error(`unknown generator $(${inner})`);
      i = close;
    } else {
      plain += c;
    }
  }
  flush();
  return Buffer.concat(out);
}

function matchingParen(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === "\\") i++;
    else if (text[i] === "(") depth++;
    else if (text[i] === ")" && --depth === 0) return i;
  }
  throw new Error("unbalanced $( )");
}
