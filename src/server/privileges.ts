/**
 * Binding 25/587/465 needs root; running SMTP does not. The listeners are bound, the data
 * directory is handed to `process.user` and the process gives up root for good (Postfix's
 * mail_owner, OpenSMTPD's _smtpd) before any connection is served or the queue runs
 * (server.ts). setgid before setuid: afterwards we could not.
 */
import { execFileSync } from "node:child_process";
import { closeSync, constants, fchownSync, fstatSync, openSync, readdirSync, type Stats } from "node:fs";
import { join } from "node:path";

export interface Identity {
  uid: number;
  gid: number;
  user: string;
}

/** No such user or group: getent exits 2 (any other failure is thrown as it is). */
export class UnknownIdentityError extends Error {}

function getent(database: "passwd" | "group", name: string): string[] {
  try {
    return execFileSync("getent", [database, name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
      .trim()
      .split(":");
  } catch (err) {
    if ((err as { status?: number }).status === 2) throw new UnknownIdentityError(`no such ${database === "passwd" ? "user" : "group"}: ${name}`);
    throw err;
  }
}

/** Looks the user up through NSS (getent), so LDAP/sssd accounts work too. execFile: no shell. */
export function lookupIdentity(user: string, group?: string): Identity {
  const pw = getent("passwd", user);
  if (pw.length < 4) throw new UnknownIdentityError(`no such user: ${user}`);
  let gid = Number(pw[3]);
  if (group !== undefined) {
    const gr = getent("group", group);
    if (gr.length < 3) throw new UnknownIdentityError(`no such group: ${group}`);
    gid = Number(gr[2]);
  }
  return { uid: Number(pw[2]), gid, user: pw[0]! };
}

export interface ChownReport {
  /** Entries whose owner was changed. */
  changed: number;
  /** Entries left alone on purpose: symbolic links, hard-linked files, sockets, devices, too deep. */
  skipped: { path: string; reason: string }[];
}

const MAX_DEPTH = 32;
const OPEN_CHILD = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

/**
 * chown -R run by root over a tree that the unprivileged user owns, and so may have filled with
 * traps (docs/SECURITY.md 11.9). Each entry is opened without following a symbolic link
 * (O_NOFOLLOW) and changed through its descriptor (fchown), so nothing can be swapped in between
 * a check and the change; each directory is listed and its children opened relative to the
 * directory already open (/proc/self/fd/N/name, Linux's openat), so replacing a directory on the
 * path with a link leads nowhere. Symbolic links are never followed or changed; a regular file
 * with more than one link is left alone (a hard link to /etc/shadow would otherwise be handed
 * over; the data directory holds none); O_NONBLOCK keeps a planted FIFO from hanging the start.
 * The top, `path`, is the configured directory and may itself be a link.
 */
export function chownTree(path: string, uid: number, gid: number): ChownReport {
  const report: ChownReport = { changed: 0, skipped: [] };
  const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NONBLOCK);
  try {
    walk(fd, fstatSync(fd), path, 0, uid, gid, report);
  } finally {
    closeSync(fd);
  }
  return report;
}

function walk(dirFd: number, st: Stats, shown: string, depth: number, uid: number, gid: number, report: ChownReport): void {
  own(dirFd, st, uid, gid, report);
  const here = `/proc/self/fd/${dirFd}`;
  for (const name of readdirSync(here)) {
    const childShown = join(shown, name);
    let fd: number;
    try {
      fd = openSync(`${here}/${name}`, OPEN_CHILD);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ELOOP") report.skipped.push({ path: childShown, reason: "symbolic link (not followed)" });
      else if (code === "ENXIO") report.skipped.push({ path: childShown, reason: "socket" });
      else if (code !== "ENOENT") throw err; // ENOENT: gone since the listing
      continue;
    }
    try {
      const cst = fstatSync(fd);
      if (cst.isDirectory()) {
        if (depth + 1 > MAX_DEPTH) report.skipped.push({ path: childShown, reason: "nested too deep" });
        else walk(fd, cst, childShown, depth + 1, uid, gid, report);
      } else if (!cst.isFile()) {
        report.skipped.push({ path: childShown, reason: "not a regular file or directory" });
      } else if (cst.nlink > 1) {
        report.skipped.push({ path: childShown, reason: `hard link (${cst.nlink} names)` });
      } else {
        own(fd, cst, uid, gid, report);
      }
    } finally {
      closeSync(fd);
    }
  }
}

function own(fd: number, st: Stats, uid: number, gid: number, report: ChownReport): void {
  if (st.uid === uid && st.gid === gid) return;
  fchownSync(fd, uid, gid);
  report.changed++;
}

/**
 * Hands `ownedPaths` to the user, then drops to it for good. Synchronous from start to end, so no
 * connection or timer can run in between. Only meaningful as root.
 */
export function dropPrivileges(id: Identity, ownedPaths: string[]): ChownReport {
  if (process.getuid?.() !== 0) throw new Error(`process.user is set to ${id.user} but postern is not running as root`);
  const report: ChownReport = { changed: 0, skipped: [] };
  for (const p of ownedPaths) {
    const r = chownTree(p, id.uid, id.gid);
    report.changed += r.changed;
    report.skipped.push(...r.skipped);
  }
  // Supplementary groups of the user (e.g. a group that may read the TLS key); drops root's.
  (process as unknown as { initgroups(user: string, gid: number): void }).initgroups(id.user, id.gid);
  process.setgid!(id.gid);
  process.setuid!(id.uid);
  if (process.getuid() !== id.uid || process.geteuid!() !== id.uid) throw new Error("setuid did not take effect");
  return report;
}
