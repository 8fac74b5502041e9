/**
 * `postern config check` against the machine: what a valid file can still get wrong, checked the
 * way the server will meet it — certificate files that are missing or do not match, a
 * `process.user` that does not exist, and files and folders the service user cannot use once root
 * is dropped (which otherwise shows up only at the first delivery, or at the first SIGHUP after a
 * certificate renewal).
 *
 * Access is tested as that user: as root, a child process drops to it exactly as the server does
 * (initgroups, setgid, setuid — so supplementary groups such as ssl-cert count) and calls
 * access(2) on each path; without root, from the mode bits, owner and the user's groups.
 */
import { execFileSync } from "node:child_process";
import { accessSync, existsSync, readFileSync, statSync } from "node:fs";
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { dirname, isAbsolute, resolve, sep } from "node:path";
import type { Config } from "../config/schema.js";
import type { ConfigFinding } from "../config/risks.js";
import { lookupIdentity, type Identity } from "../server/privileges.js";

/** A path the service needs, and how. */
interface Need {
  path: string;
  /** read: a file; write: create entries in a folder; search: reach what is inside a folder. */
  mode: Mode;
  key: string;
  /** What breaks when the service user cannot do it. */
  consequence: string;
}

type Mode = "read" | "write" | "search";

const CERT_WARN_DAYS = 14;
/** access(2) bits per mode: R; W and X; X. */
const BITS: Record<Mode, number> = { read: 4, write: 3, search: 1 };

function errnoText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "does not exist";
  if (code === "EACCES") return "is not readable";
  if (code === "EISDIR") return "is a folder";
  return (err as Error).message;
}

/** tls.cert and tls.key: present, parseable, the key belongs to the certificate, not expired. */
export function auditTls(config: Config, now = Date.now()): ConfigFinding[] {
  const { cert: certPath, key: keyPath } = config.tls;
  if (certPath === undefined || keyPath === undefined) return [];
  const out: ConfigFinding[] = [];
  let cert: X509Certificate | undefined;
  let key: KeyObject | undefined;
  try {
    cert = new X509Certificate(readFileSync(certPath));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    out.push({
      level: "error",
      key: "tls.cert",
      message: code ? `${certPath} ${errnoText(err)}` : `${certPath} holds no PEM certificate (${(err as Error).message})`,
    });
  }
  try {
    key = createPrivateKey(readFileSync(keyPath));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const encrypted = /passphrase|encrypted|bad decrypt/i.test(String((err as Error).message));
    out.push({
      level: "error",
      key: "tls.key",
      message:
        code && !code.startsWith("ERR_")
          ? `${keyPath} ${errnoText(err)}`
          : encrypted
            ? `${keyPath} is encrypted with a passphrase; Postern needs an unencrypted key (openssl pkey -in KEY -out KEY.plain)`
            : `${keyPath} holds no PEM private key`,
    });
  }
  if (cert && key && !cert.checkPrivateKey(key)) {
    out.push({
      level: "error",
      key: "tls.key",
      message: `${keyPath} does not belong to the certificate ${certPath} (${cert.subject.replace(/\n/g, ", ")}): after a renewal, both must be the new pair`,
    });
  }
  if (cert) {
    const expires = Date.parse(cert.validTo);
    const days = Math.floor((expires - now) / 86_400_000);
    if (expires < now) out.push({ level: "error", key: "tls.cert", message: `${certPath} expired on ${cert.validTo}` });
    else if (days < CERT_WARN_DAYS)
      out.push({ level: "warning", key: "tls.cert", message: `${certPath} expires in ${days} day${days === 1 ? "" : "s"} (${cert.validTo})` });
    if (Date.parse(cert.validFrom) > now) out.push({ level: "error", key: "tls.cert", message: `${certPath} is not valid before ${cert.validFrom}` });
  }
  return out;
}

/** The folder a Maildir template starts in: "/var/mail/{domain}/{localpart}" → "/var/mail". */
export function maildirRoot(template: string): string {
  const brace = template.indexOf("{");
  const fixed = brace < 0 ? template : template.slice(0, brace);
  return fixed.endsWith(sep) ? fixed.slice(0, -1) || sep : dirname(fixed);
}

function nearestExisting(path: string): string {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  return p;
}

function inside(child: string, parent: string): boolean {
  const c = resolve(child);
  const p = resolve(parent);
  return c === p || c.startsWith(p.endsWith(sep) ? p : p + sep);
}

/** Local domains that deliver to the Maildir (no transport entry, or `maildir`). */
function usesMaildir(config: Config): boolean {
  return config.domains.some((d) => {
    const entry = config.transport[d.toLowerCase()] ?? config.transport[d];
    return entry === undefined || entry.trim().split(/\s+/)[0] === "maildir";
  });
}

/** What the server touches after dropping root. */
function needs(config: Config, configPath: string | undefined): Need[] {
  const out: Need[] = [];
  const reload = "SIGHUP reload (e.g. after a certificate renewal) will fail";
  if (configPath) out.push({ path: configPath, mode: "read", key: "(config file)", consequence: reload });
  if (config.tls.cert) out.push({ path: config.tls.cert, mode: "read", key: "tls.cert", consequence: reload });
  if (config.tls.key) out.push({ path: config.tls.key, mode: "read", key: "tls.key", consequence: reload });
  if (config.aliases.file)
    out.push({ path: config.aliases.file, mode: "read", key: "aliases.file", consequence: "changes to the alias file will not be picked up" });
  const passwdFiles = [
    ...(config.auth.backend === "passwd-file" && config.auth.path ? [["auth.path", config.auth.path] as const] : []),
    ...Object.entries(config.auth.domains).flatMap(([d, b]) => (b.backend === "passwd-file" && b.path ? [[`auth.domains.${d}.path`, b.path] as const] : [])),
  ];
  for (const [key, path] of passwdFiles)
    out.push({ path, mode: "read", key, consequence: "users added to the passwd-file will not be able to log in until a restart" });
  if (usesMaildir(config)) {
    const root = maildirRoot(config.delivery.maildir);
    // dataDir is handed to the service user at start: a Maildir inside it is always writable.
    if (!inside(root, config.dataDir)) {
      const existing = nearestExisting(root);
      const what = existing === root ? "" : ` (so it cannot create ${root})`;
      out.push({ path: existing, mode: "write", key: "delivery.maildir", consequence: `local delivery will fail and mail stays deferred${what}` });
    }
  }
  // The server chowns dataDir itself, but it must be able to reach it.
  out.push({
    path: nearestExisting(dirname(resolve(config.dataDir))),
    mode: "search",
    key: "dataDir",
    consequence: "the server cannot reach its data directory once root is dropped",
  });
  return out.map((n) => ({ ...n, path: isAbsolute(n.path) ? n.path : resolve(n.path) }));
}

/** The child that becomes the service user, as src/server/privileges.ts does, and calls access(2). */
const PROBE = `
const fs = require("node:fs");
const { user, gid, uid, checks } = JSON.parse(process.argv[1]);
process.initgroups(user, gid);
process.setgid(gid);
process.setuid(uid);
const results = checks.map(({ path, bits }) => {
  try { fs.accessSync(path, bits); return null; } catch (e) { return e.code || String(e); }
});
process.stdout.write(JSON.stringify(results));
`;

/** access(2) as `id`, from a child that dropped to it (needs root). Null per path when allowed. */
function probeAsUser(id: Identity, checks: Need[]): (string | null)[] {
  const arg = JSON.stringify({ user: id.user, uid: id.uid, gid: id.gid, checks: checks.map((c) => ({ path: c.path, bits: BITS[c.mode] })) });
  const out = execFileSync(process.execPath, ["--input-type=commonjs", "-e", PROBE, arg], { encoding: "utf8" });
  return JSON.parse(out) as (string | null)[];
}

/** Without root: owner, group (the user's groups from NSS) and other bits, on the path and every folder above it. */
function estimateAsUser(id: Identity, path: string, mode: Mode): string | null {
  const groups = new Set(execFileSync("id", ["-G", id.user], { encoding: "utf8" }).trim().split(/\s+/).map(Number));
  groups.add(id.gid);
  const allowed = (p: string, want: number) => {
    const st = statSync(p);
    const shift = st.uid === id.uid ? 6 : groups.has(st.gid) ? 3 : 0;
    return ((st.mode >> shift) & want) === want;
  };
  try {
    for (let p = dirname(path); ; p = dirname(p)) {
      if (!allowed(p, 1)) return "EACCES";
      if (dirname(p) === p) break;
    }
    return allowed(path, BITS[mode]) ? null : "EACCES";
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

/** process.user and process.group exist; then each need, as that user. */
export function auditService(config: Config, configPath: string | undefined): ConfigFinding[] {
  const out: ConfigFinding[] = [];
  const { user, group } = config.process;
  let id: Identity | undefined;
  if (user !== undefined) {
    try {
      id = lookupIdentity(user, group);
    } catch {
      let userExists = true;
      try {
        lookupIdentity(user);
      } catch {
        userExists = false;
      }
      if (!userExists) out.push({ level: "error", key: "process.user", message: `no such user: ${user} (create it, e.g. adduser --system --group ${user})` });
      else out.push({ level: "error", key: "process.group", message: `no such group: ${group}` });
      return out;
    }
  }
  const list = needs(config, configPath).filter((n) => existsSync(n.path));
  let results: (string | null)[];
  const myUid = process.geteuid?.() ?? -1;
  if (id === undefined || id.uid === myUid) {
    // No privilege drop (or we are that user): the server runs as whoever runs it; check as ourselves.
    results = list.map((c) => {
      try {
        accessSync(c.path, BITS[c.mode]);
        return null;
      } catch (err) {
        return (err as NodeJS.ErrnoException).code ?? String(err);
      }
    });
  } else if (myUid === 0) {
    try {
      results = probeAsUser(id, list);
    } catch {
      results = list.map((c) => estimateAsUser(id!, c.path, c.mode)); // e.g. no fork allowed here
    }
  } else results = list.map((c) => estimateAsUser(id!, c.path, c.mode));
  const who = id ? `user ${id.user}` : "this user";
  const estimated = id && myUid !== 0 && id.uid !== myUid ? " (from the mode bits; run as root for an exact check)" : "";
  list.forEach((n, i) => {
    const code = results[i];
    if (code === null || code === undefined) return;
    const can = n.mode === "write" ? "cannot create files in" : n.mode === "search" ? "cannot reach" : "cannot read";
    out.push({ level: "error", key: n.key, message: `${who} ${can} ${n.path}${code === "EACCES" ? "" : ` (${code})`}${estimated}: ${n.consequence}` });
  });
  return out;
}

export function auditConfig(config: Config, configPath: string | undefined): ConfigFinding[] {
  return [...auditTls(config), ...auditService(config, configPath)];
}
