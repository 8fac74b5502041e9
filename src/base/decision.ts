/** What a policy check answers: allow, or deny with the SMTP reply and the reason for the log. */
import type { Reply } from "./reply.js";

export type Decision = { allow: true; note?: string } | { allow: false; reply: Reply; reason: string };

export const ALLOW: Decision = { allow: true };

export function deny(reply: Reply, reason: string): Decision {
  return { allow: false, reply, reason };
}
