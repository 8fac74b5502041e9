/**
 * What the autoconfig tests need to read answers: an HTTPS request that verifies the server's
 * certificate against a CA, and small, strict readers of the XML documents (a few elements of
 * known names) and of Apple plists (the subset Postern writes).
 */
import assert from "node:assert/strict";
import { request } from "node:https";

export interface HttpsReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
}

export function httpsRequest(
  port: number,
  o: { path: string; method?: string; body?: string | Buffer; headers?: Record<string, string>; ca: string; servername?: string },
): Promise<HttpsReply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method: o.method ?? "GET",
        path: o.path,
        ca: o.ca,
        servername: o.servername ?? "mail.example.org",
        headers: o.headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (d: Buffer) => chunks.push(d));
        res.on("end", () => {
          const body = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString("utf8") });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(o.body);
  });
}

/** The inner texts of every <name>…</name> (no attributes) in `xml`. */
export function texts(xml: string, name: string): string[] {
  return [...xml.matchAll(new RegExp(`<${name}>([^<]*)</${name}>`, "g"))].map((m) => m[1]!);
}

/** The blocks <name attrs>…</name>, with their attributes. */
export function blocks(xml: string, name: string): { attrs: Record<string, string>; inner: string }[] {
  return [...xml.matchAll(new RegExp(`<${name}((?:\\s+[\\w:]+="[^"]*")*)\\s*>([\\s\\S]*?)</${name}>`, "g"))].map((m) => ({
    attrs: Object.fromEntries([...m[1]!.matchAll(/([\w:]+)="([^"]*)"/g)].map((a) => [a[1]!, a[2]!])),
    inner: m[2]!,
  }));
}

/** One element's text, which must occur exactly once. */
export function one(xml: string, name: string): string {
  const all = texts(xml, name);
  assert.equal(all.length, 1, `exactly one <${name}> in ${xml}`);
  return all[0]!;
}

const unescapeXml = (s: string) => s.replace(/&(amp|lt|gt|quot|apos);/g, (_m, e: string) => ({ amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" })[e]!);

export type Plist = string | number | boolean | Plist[] | { [key: string]: Plist };

/**
 * Parses the plist subset of Apple's DTD that profiles use (dict, array, key, string, integer,
 * true, false), throwing on anything else or on a dict whose keys and values do not alternate.
 */
export function parsePlist(xml: string): Plist {
  const header =
    /^<\?xml version="1\.0" encoding="UTF-8"\?>\s*<!DOCTYPE plist PUBLIC "-\/\/Apple\/\/DTD PLIST 1\.0\/\/EN" "http:\/\/www\.apple\.com\/DTDs\/PropertyList-1\.0\.dtd">\s*<plist version="1\.0">/;
  const m = header.exec(xml);
  if (!m) throw new Error("not a plist 1.0 document");
  const tokens = [...xml.slice(m[0].length).matchAll(/<(\/?)(\w+)(\/?)>|([^<]+)/g)].filter((t) => t[4] === undefined || t[4].trim() !== "");
  let i = 0;
  const next = () => {
    const t = tokens[i++];
    if (!t) throw new Error("unexpected end");
    return t;
  };
  const textOf = (name: string): string => {
    const t = next();
    if (t[4] === undefined) {
      if (t[1] === "/" && t[2] === name) return "";
      throw new Error(`<${name}> holds markup`);
    }
    const close = next();
    if (close[1] !== "/" || close[2] !== name) throw new Error(`<${name}> not closed`);
    return unescapeXml(t[4]);
  };
  const value = (): Plist => {
    const t = next();
    if (t[4] !== undefined || t[1] === "/") throw new Error(`unexpected ${t[0]}`);
    const name = t[2]!;
    if (t[3] === "/") {
      if (name === "true") return true;
      if (name === "false") return false;
      throw new Error(`unexpected <${name}/>`);
    }
    if (name === "string") return textOf("string");
    if (name === "integer") {
      const s = textOf("integer");
      if (!/^-?\d+$/.test(s)) throw new Error(`bad integer ${s}`);
      return Number(s);
    }
    if (name === "array") {
      const out: Plist[] = [];
      while (!(tokens[i]?.[1] === "/" && tokens[i]?.[2] === "array")) out.push(value());
      i++;
      return out;
    }
    if (name === "dict") {
      const out: Record<string, Plist> = {};
      for (;;) {
        const k = next();
        if (k[1] === "/" && k[2] === "dict") return out;
        if (k[2] !== "key" || k[1] === "/") throw new Error(`dict wants <key>, got ${k[0]}`);
        const key = textOf("key");
        if (key in out) throw new Error(`duplicate key ${key}`);
        out[key] = value();
      }
    }
    throw new Error(`unexpected <${name}>`);
  };
  const root = value();
  const end = next();
  if (end[1] !== "/" || end[2] !== "plist" || i !== tokens.length) throw new Error("content after the root value");
  return root;
}
