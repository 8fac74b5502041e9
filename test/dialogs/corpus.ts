/**
 * The dialog files as a seed corpus for the property tests (test/smtp/properties.test.ts,
 * fuzz-session.test.ts): what the dialogs write — each write, and each connection's writes in
 * order — parsed with format.ts. Every new dialog widens the fuzzing without touching the fuzzers.
 */
import { readdirSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseDialogFile, type Listener } from "./format.js";

/** The sources, not dist/: this file runs as dist/test/dialogs/corpus.js. */
export const DIALOG_DIR = resolve(import.meta.dirname, "../../../test/dialogs");

export interface DialogConversation {
  listener: Listener;
  /** The connection's writes in order; STARTTLS handshakes and pauses are left out. */
  writes: Buffer[];
}

export interface DialogCorpus {
  /** Every single write of every dialog: command lines with their CRLF, message bodies, groups. */
  writes: Buffer[];
  /** Every connection of every dialog. */
  conversations: DialogConversation[];
}

/**
 * Reads every dialog file. `account`: the login the fuzzed session knows; every `@user` of a file
 * (address and password, also inside AUTH's base64) is renamed to it before parsing, so that the
 * dialogs' logins and local recipients work against the fuzzer's own users.
 */
export function loadDialogCorpus(account?: { address: string; password: string }): DialogCorpus {
  const corpus: DialogCorpus = { writes: [], conversations: [] };
  for (const file of readdirSync(DIALOG_DIR)
    .filter((f) => f.endsWith(".txt"))
    .sort()) {
    let text = readFileSync(resolve(DIALOG_DIR, file), "utf8");
    if (account) {
      for (const u of parseDialogFile(text, file).users) {
        text = text.replaceAll(u.address, account.address).replaceAll(u.password, account.password);
      }
    }
    for (const dialog of parseDialogFile(text, file).dialogs) {
      let current: DialogConversation | null = null;
      for (const step of dialog.steps) {
        if (step.kind === "connect") {
          current = { listener: step.listener, writes: [] };
          corpus.conversations.push(current);
        } else if (step.kind === "send" && current) {
          current.writes.push(step.bytes);
          corpus.writes.push(step.bytes);
        }
      }
    }
  }
  corpus.conversations = corpus.conversations.filter((c) => c.writes.length > 0);
  return corpus;
}
