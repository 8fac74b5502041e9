/**
 * The local submission protocol between `postern sendmail` and the server: one JSON line with
 * the envelope, then the message bytes (CRLF lines) until the client half-closes; the server
 * answers with one JSON line. JSON both ways: no hand-built records (SECURITY.md rule 17).
 */
import { isAbsolute, join } from "node:path";
import type { Config } from "../config/schema.js";

export const LOCAL_SUBMIT_DEFAULT_CONFIG = "/etc/postern/postern.yaml";

export interface LocalSubmitRequest {
  version: 1;
  /** The invoking user's login name, as the client reports it (see local-submit.ts on trust). */
  user: string;
  uid: number;
  /** -f; absent: user@first local domain. */
  sender?: string;
  /** -F, for a From: header the message lacks. */
  fullName?: string;
  recipients: string[];
}

export type LocalSubmitResponse = { ok: true; id: string } | { ok: false; error: string; temporary?: boolean; badAddress?: boolean };

/** Where the socket is: localSubmit.socket, relative to dataDir unless absolute; null when off. */
export function localSubmitSocketPath(config: Config): string | null {
  const s = config.localSubmit.socket;
  if (s === undefined) return null;
  return isAbsolute(s) ? s : join(config.dataDir, s);
}
