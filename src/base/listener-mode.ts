/**
 * The three SMTP listener modes (docs/DESIGN.md "Listener modes"): port 25 MTA, 587 submission
 * with STARTTLS, 465 submissions with implicit TLS (RFC 8314). The one spelling of the list.
 */
export const LISTENER_MODES = ["mta", "submission", "submissions"] as const;

export type ListenerMode = (typeof LISTENER_MODES)[number];

export function isListenerMode(text: string): text is ListenerMode {
  return (LISTENER_MODES as readonly string[]).includes(text);
}
