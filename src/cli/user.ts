/**
 * `postern user add|del|passwd|list|app-password|require-app-passwords`: manage the built-in user
 * store, SQLite or (store.backend: postgres) the PostgreSQL every node reads.
 */
import { randomBytes } from "node:crypto";
import type { Config } from "../config/schema.js";
import { openUserStore, type OpenedUserStore } from "../store/user-store.js";
import { announce, commandConfig } from "./config-source.js";
import { readPassword } from "./secret-input.js";

function openStore(config: Config): Promise<OpenedUserStore> {
  return openUserStore(config);
}

/** The backend that checks this address's logins: auth.domains for its domain, else auth.backend. */
function backendOf(config: Config, address: string): { backend: string; path?: string; socket?: string; key: string } {
  const domain = address.slice(address.lastIndexOf("@") + 1).toLowerCase();
  const entry = Object.entries(config.auth.domains).find(([d]) => d.toLowerCase() === domain);
  if (entry && address.includes("@")) return { ...entry[1], key: `auth.domains.${entry[0]}.backend` };
  return { ...config.auth, key: "auth.backend" };
}

/**
 * A password written here would never be checked when another backend answers the logins: say
 * where the user belongs instead. Dovecot and saslauthd keep no mailbox directory for Postern, so
 * there the SQLite store still lists mailboxes and their extra sender addresses (--no-password).
 */
function refuseUnusedPassword(config: Config, address: string, action: "add" | "passwd"): void {
  const b = backendOf(config, address);
  const where = `${b.key}: ${b.backend}`;
  if (b.backend === "passwd-file") {
    throw new Error(
      `${address} logs in through the passwd-file ${b.path} (${where}); Postern's own user store is not used for it.\n` +
        `  ${action === "add" ? "add the user to" : "change the password in"} that file, e.g.:\n` +
        `  echo "${address}:$(doveadm pw -s SHA512-CRYPT)::::::" >> ${b.path}` +
        (action === "passwd" ? `   (after removing the old ${address} line)` : ""),
    );
  }
  if (b.backend === "dovecot" || b.backend === "saslauthd") {
    const tool =
      b.backend === "dovecot"
        ? "set the password in Dovecot's passdb (doveadm pw -s SHA512-CRYPT writes a hash for a passwd-file passdb)"
        : "set the password where saslauthd checks it (for saslauthd -a pam: the system account, e.g. passwd or chpasswd)";
    throw new Error(
      `${address} logs in through ${b.backend} (${where}, socket ${b.socket}); a password stored here would never be checked.\n` +
        `  ${tool}.` +
        (action === "add" ? `\n  To list ${address} only as a mailbox (and its --sender addresses) here, use --no-password.` : ""),
    );
  }
}

async function newPassword(fromStdin: boolean): Promise<string> {
  const password = await readPassword({ fromStdin, prompt: "Password: " });
  if (password.length === 0) throw new Error("empty password refused");
  return password;
}

export async function userAdd(
  address: string,
  opts: { config?: string; passwordStdin?: boolean; sender?: string[]; password?: boolean; relayClient?: boolean; requireAppPasswords?: boolean },
): Promise<void> {
  const resolved = commandConfig(opts.config);
  const noPassword = opts.password === false;
  if (noPassword) {
    if (backendOf(resolved.config, address).backend === "passwd-file") refuseUnusedPassword(resolved.config, address, "add");
  } else refuseUnusedPassword(resolved.config, address, "add");
  // --no-password: a random secret nobody knows, so the entry can never be logged into here.
  const password = noPassword ? randomBytes(32).toString("base64url") : await newPassword(opts.passwordStdin === true);
  announce(resolved);
  const { store, close } = await openStore(resolved.config);
  try {
    await store.addUser(address, password, {
      senders: opts.sender ?? [],
      relayClient: opts.relayClient === true,
      ...(opts.requireAppPasswords ? { requireAppPasswords: true } : {}),
    });
    const notes = `${noPassword ? " (mailbox only, no password)" : ""}${opts.relayClient ? " (relay client)" : ""}${opts.requireAppPasswords ? " (app passwords only)" : ""}`;
    process.stdout.write(`added ${address}${notes}\n`);
  } finally {
    await close();
  }
}

export async function userPasswd(address: string, opts: { config?: string; passwordStdin?: boolean }): Promise<void> {
  const resolved = commandConfig(opts.config);
  refuseUnusedPassword(resolved.config, address, "passwd");
  const password = await newPassword(opts.passwordStdin === true);
  announce(resolved);
  const { store, close } = await openStore(resolved.config);
  try {
    await store.setPassword(address, password);
    process.stdout.write(`password changed for ${address}\n`);
  } finally {
    await close();
  }
}

export async function userDel(address: string, opts: { config?: string }): Promise<void> {
  const resolved = commandConfig(opts.config);
  announce(resolved);
  const { store, close } = await openStore(resolved.config);
  try {
    if (!(await store.deleteUser(address))) throw new Error(`no such user: ${address}`);
    process.stdout.write(`deleted ${address}\n`);
  } finally {
    await close();
  }
}

export async function userList(opts: { config?: string; json?: boolean }): Promise<void> {
  const { config } = commandConfig(opts.config);
  const b = config.auth.backend;
  if (b === "passwd-file") process.stderr.write(`postern: auth.backend is passwd-file: the users are in ${config.auth.path}, not in this store\n`);
  else if (b !== "sqlite") process.stderr.write(`postern: auth.backend is ${b}: these entries are mailboxes and sender addresses; ${b} checks the passwords\n`);
  const { store, close } = await openStore(config);
  try {
    const users = await store.listUsers();
    if (opts.json) process.stdout.write(JSON.stringify(users, null, 2) + "\n");
    else
      for (const u of users)
        process.stdout.write(
          `${u.address}${u.disabled ? " (disabled)" : ""}${u.relayClient ? " (relay client)" : ""}${u.senders.length ? `  senders: ${u.senders.join(", ")}` : ""}\n`,
        );
  } finally {
    await close();
  }
}

/**
 * `postern user relay-client ADDRESS on|off`: a mail server or application relaying for its
 * domains — its "@domain" senders then cover the hosts under them, and it may pass on the
 * null-sender reports its own MTA writes (From: MAILER-DAEMON@host; src/policy/sender.ts).
 */
export async function userRelayClient(address: string, state: string, opts: { config?: string }): Promise<void> {
  if (state !== "on" && state !== "off") throw new Error(`expected on or off, not ${JSON.stringify(state)}`);
  const resolved = commandConfig(opts.config);
  announce(resolved);
  const { store, close } = await openStore(resolved.config);
  try {
    await store.setRelayClient(address, state === "on");
    process.stdout.write(`${address}: relay client ${state}\n`);
  } finally {
    await close();
  }
}

/** App passwords are checked by the built-in store only: refuse where another backend answers the logins. */
function refuseOtherBackend(config: Config, address: string): void {
  const b = backendOf(config, address);
  if (b.backend !== "sqlite") {
    throw new Error(`${address} logs in through ${b.backend} (${b.key}); app passwords work only with the SQLite store (auth.backend: sqlite)`);
  }
}

/**
 * `postern user app-password add USER --name NAME`: the new password alone on stdout (for a
 * script or a QR code), everything else on stderr. Shown once; the store keeps only its hash.
 */
export async function appPasswordAdd(address: string, opts: { config?: string; name: string }): Promise<void> {
  const resolved = commandConfig(opts.config);
  refuseOtherBackend(resolved.config, address);
  announce(resolved);
  const { store, close } = await openStore(resolved.config);
  try {
    const password = await store.addAppPassword(address, opts.name);
    process.stdout.write(`${password}\n`);
    process.stderr.write(
      `postern: app password ${JSON.stringify(opts.name.trim())} added for ${address}; it is shown only this once.\n` +
        "postern: use it as the SMTP password (PLAIN or LOGIN over TLS) with the login name as usual; the dashes are optional.\n",
    );
  } finally {
    await close();
  }
}

/** `postern user app-password list USER`: name, created, last used, from where — never a password. */
export async function appPasswordList(address: string, opts: { config?: string; json?: boolean }): Promise<void> {
  const resolved = commandConfig(opts.config);
  refuseOtherBackend(resolved.config, address);
  const { store, close } = await openStore(resolved.config);
  try {
    const list = await store.listAppPasswords(address);
    const { required, byDefault } = await store.requiresAppPasswords(address);
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ address, requireAppPasswords: required, appPasswords: list }, null, 2)}\n`);
      return;
    }
    process.stderr.write(`postern: ${address}: main password ${required ? "refused" : "accepted"}${byDefault ? " (auth.requireAppPasswords)" : ""}\n`);
    if (list.length === 0) process.stderr.write(`postern: ${address} has no app passwords\n`);
    for (const p of list) {
      const used = p.lastUsedAt ? `last used ${p.lastUsedAt} from ${p.lastUsedIp ?? "an unknown address"}` : "never used";
      process.stdout.write(`${p.name}  created ${p.createdAt}  ${used}\n`);
    }
  } finally {
    await close();
  }
}

/** `postern user app-password revoke USER NAME`: at once, also for a running server (no cache outlives the row). */
export async function appPasswordRevoke(address: string, name: string, opts: { config?: string }): Promise<void> {
  const resolved = commandConfig(opts.config);
  announce(resolved);
  const { store, close } = await openStore(resolved.config);
  try {
    if (!(await store.revokeAppPassword(address, name))) throw new Error(`${address} has no app password named ${JSON.stringify(name)}`);
    process.stdout.write(`revoked app password ${JSON.stringify(name)} of ${address}\n`);
  } finally {
    await close();
  }
}

/** `postern user require-app-passwords USER on|off|default`: refuse (or accept) the main password for SMTP. */
export async function userRequireAppPasswords(address: string, state: string, opts: { config?: string }): Promise<void> {
  if (state !== "on" && state !== "off" && state !== "default") throw new Error(`expected on, off or default, not ${JSON.stringify(state)}`);
  const resolved = commandConfig(opts.config);
  refuseOtherBackend(resolved.config, address);
  announce(resolved);
  const { store, close } = await openStore(resolved.config);
  try {
    await store.setRequireAppPasswords(address, state === "default" ? null : state === "on");
    const { required } = await store.requiresAppPasswords(address);
    process.stdout.write(`${address}: app passwords ${required ? "required" : "not required"}${state === "default" ? " (auth.requireAppPasswords)" : ""}\n`);
  } finally {
    await close();
  }
}
