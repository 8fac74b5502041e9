/**
 * Binding 25/587/465 needs root; running SMTP does not. After the listeners are bound, the data
 * directory is handed to `process.user` and the process gives up root for good (Postfix's
 * mail_owner, OpenSMTPD's _smtpd). setgid before setuid: afterwards we could not.
 */
import { execFileSync } from "node:child_process";
import { chownSync, readdirSync, lstatSync } from "node:fs";
import { join } from "node:path";

export interface Identity {
  uid: number;
  gid: number;
  user: string;
}

/** Looks the user up through NSS (getent), so LDAP/sssd accounts work too. execFile: no shell. */
export function lookupIdentity(user: string, group?: string): Identity {
  const pw = execFileSync("getent", ["passwd", user], { encoding: "utf8" }).trim().split(":");
  if (pw.length < 4) throw new Error(`no such user: ${user}`);
  let gid = Number(pw[3]);
  if (group !== undefined) {
    const gr = execFileSync("getent", ["group", group], { encoding: "utf8" }).trim().split(":");
    if (gr.length < 3) throw new Error(`no such group: ${group}`);
    gid = Number(gr[2]);
  }
  return { uid: Number(pw[2]), gid, user: pw[0]! };
}

/** chown -R without following symlinks (a link planted in the data dir must not redirect it). */
export function chownTree(path: string, uid: number, gid: number): void {
  const st = lstatSync(path);
  if (st.isSymbolicLink()) return;
  chownSync(path, uid, gid);
  if (st.isDirectory()) for (const name of readdirSync(path)) chownTree(join(path, name), uid, gid);
}

/** Hands `ownedPaths` to the user, then drops to it. Only meaningful as root; a no-op otherwise. */
export function dropPrivileges(id: Identity, ownedPaths: string[]): void {
  if (process.getuid?.() !== 0) throw new Error(`process.user is set to ${id.user} but postern is not running as root`);
  for (const p of ownedPaths) chownTree(p, id.uid, id.gid);
  // Supplementary groups of the user (e.g. a group that may read the TLS key); drops root's.
  (process as unknown as { initgroups(user: string, gid: number): void }).initgroups(id.user, id.gid);
  process.setgid!(id.gid);
  process.setuid!(id.uid);
  if (process.getuid() !== id.uid || process.geteuid!() !== id.uid) throw new Error("setuid did not take effect");
}
