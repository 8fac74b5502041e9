/**
 * `postern auth-string`: the strings a person types when testing AUTH by hand (RFC 4954 §4), built
 * by our own SASL client mechanisms, and `--decode` to see what a captured string carries.
 * The password comes from a no-echo prompt or stdin, never from argv (shell history, `ps`).
 */
import { LOGIN_PASSWORD_PROMPT, LOGIN_USERNAME_PROMPT } from "../sasl/login.js";
import { createClientMechanism } from "../sasl/index.js";
import { decodeBase64Strict } from "../smtp/base64.js";
import { readPassword } from "./secret-input.js";

export interface AuthStrings {
  /** base64 of authzid NUL authcid NUL password (RFC 4616 §2). */
  plain: string;
  loginUsername: string;
  loginPassword: string;
}

export function authStrings(username: string, password: string, authzid?: string): AuthStrings {
  const creds = { username, password, authzid };
  const plain = createClientMechanism("PLAIN", creds)!.initial()!;
  const login = createClientMechanism("LOGIN", creds)!;
  return {
    plain: plain.toString("base64"),
    loginUsername: login.respond(Buffer.from(LOGIN_USERNAME_PROMPT)).toString("base64"),
    loginPassword: login.respond(Buffer.from(LOGIN_PASSWORD_PROMPT)).toString("base64"),
  };
}

/** Shows the bytes as text with NUL as \0 and other control bytes escaped, so nothing hides. */
export function visible(bytes: Buffer): string {
  let out = "";
  for (const ch of bytes.toString("utf8")) {
    const c = ch.codePointAt(0)!;
    if (c === 0) out += "\\0";
    else if (ch === "\\") out += "\\\\";
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return out;
}

/** What a captured AUTH string contains; throws on anything that is not strict base64 (SECURITY rule 10). */
export function describeAuthString(text: string): string {
  const bytes = decodeBase64Strict(text.trim());
  if (!bytes) throw new Error("not valid base64 (RFC 4648 alphabet, length a multiple of 4)");
  const lines = [`decoded: ${visible(bytes)}`];
  const parts = bytes.toString("utf8").split("\0");
  if (parts.length === 3) {
    lines.push(`as AUTH PLAIN: authzid=${JSON.stringify(parts[0])} authcid=${JSON.stringify(parts[1])} password=${JSON.stringify(parts[2])}`);
  }
  return lines.join("\n") + "\n";
}

export async function authStringCommand(user: string | undefined, opts: { authzid?: string; passwordStdin?: boolean; decode?: string }): Promise<void> {
  if (opts.decode !== undefined) {
    process.stdout.write(describeAuthString(opts.decode));
    return;
  }
  if (!user) throw new Error("a user name is required (or --decode STRING)");
  const password = await readPassword({ fromStdin: opts.passwordStdin === true, prompt: `Password for ${user}: ` });
  if (password.length === 0) throw new Error("empty password refused");
  const s = authStrings(user, password, opts.authzid);
  process.stdout.write(`AUTH PLAIN ${s.plain}\n` + `# AUTH LOGIN, then answer the two 334 prompts with:\n${s.loginUsername}\n${s.loginPassword}\n`);
}
