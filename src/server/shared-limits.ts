/**
 * The AUTH throttle, the send limits and the connection caps when several processes serve the
 * same listeners (src/server/workers.ts). Every process keeps the whole state: each change a
 * worker makes is sent to the primary, which applies it to its own copy and passes it to every
 * other worker. Checks therefore stay synchronous and local (the policy classes do no I/O), and
 * ten failed AUTHs spread over the workers lock an IP as ten on one process do: a change reaches
 * the others in well under a millisecond, long before the client has its reply and tries again.
 *
 * The policy objects are wrapped, not changed: with one process nothing here runs. Counters kept
 * elsewhere (PostgreSQL, shared by every process and node already) are left as they are.
 */
import { AuthThrottle } from "../policy/auth-throttle.js";
import { SendLimits } from "../policy/send-limits.js";
import type { ClientLimits, ClientLimitsChange } from "../policy/client-limits.js";

/** One change, as it travels between processes (IPC, structured clone). */
export type SharedLimitEvent =
  | { kind: "auth-failed"; ip: string; user?: string }
  | { kind: "auth-succeeded"; ip: string; user: string }
  | { kind: "sent"; user: string; recipients: number }
  | { kind: "connections"; change: ClientLimitsChange };

export interface SharedLimits {
  /** Applies another process's change (`from` names that process). */
  apply(event: SharedLimitEvent, from: string): void;
  /** A process ended: its open connections no longer count. */
  peerGone(from: string): void;
}

export function shareLimits(
  parts: { throttle: object; sendLimits: object; clientLimits: ClientLimits },
  publish: (event: SharedLimitEvent) => void,
): SharedLimits {
  const { throttle, sendLimits, clientLimits } = parts;
  // The originals, to apply others' changes without sending them on again.
  let failed: AuthThrottle["failed"] | undefined;
  let succeeded: AuthThrottle["succeeded"] | undefined;
  let sent: SendLimits["sent"] | undefined;
  if (throttle instanceof AuthThrottle) {
    const ownFailed = (failed = throttle.failed.bind(throttle));
    const ownSucceeded = (succeeded = throttle.succeeded.bind(throttle));
    throttle.failed = (ip, user) => {
      const verdict = ownFailed(ip, user);
      publish(user === undefined ? { kind: "auth-failed", ip } : { kind: "auth-failed", ip, user });
      return verdict;
    };
    throttle.succeeded = (ip, user) => {
      ownSucceeded(ip, user);
      publish({ kind: "auth-succeeded", ip, user });
    };
  }
  if (sendLimits instanceof SendLimits) {
    const ownSent = (sent = sendLimits.sent.bind(sendLimits));
    sendLimits.sent = (user, recipients) => {
      ownSent(user, recipients);
      publish({ kind: "sent", user, recipients });
    };
  }
  clientLimits.onChange = (change) => publish({ kind: "connections", change });
  return {
    apply(event, from) {
      switch (event.kind) {
        case "auth-failed":
          return void failed?.(event.ip, event.user);
        case "auth-succeeded":
          return succeeded?.(event.ip, event.user);
        case "sent":
          return sent?.(event.user, event.recipients);
        case "connections":
          return clientLimits.peerChanged(from, event.change);
      }
    },
    peerGone: (from) => clientLimits.peerGone(from),
  };
}
