/**
 * Valid but risky TLS settings, for `postern config check` to print. Each line names the key and
 * says what an attacker gets from it.
 */
import { parseTransport } from "../delivery/transport.js";
import type { Config } from "./schema.js";

export function tlsWarnings(config: Config): string[] {
  const out: string[] = [];
  const s = config.relay.smarthost;
  if (s !== undefined && typeof s !== "string" && s.auth !== undefined) {
    if (!s.verify) {
      out.push(
        "relay.smarthost.verify is false while relay.smarthost.auth is set: the relay's certificate is not checked, so a man in the middle gets the relay password",
      );
    }
    if (s.tls === "none") {
      out.push("relay.smarthost.tls is none while relay.smarthost.auth is set: AUTH is never sent in clear, so every message to the relay will be deferred");
    }
    // Routes that reach the configured relay carry its AUTH (router.ts): their options count too.
    for (const [key, value] of Object.entries(config.transport)) {
      let t: ReturnType<typeof parseTransport>;
      try {
        t = parseTransport(value);
      } catch {
        continue; // the schema reports it
      }
      if (t.kind !== "smarthost") continue;
      if (t.host !== undefined && (t.host !== s.host || t.port !== s.port)) continue;
      if (t.verify === false) {
        out.push(`transport "${key}": verify=no on the route to relay.smarthost, which sends AUTH: a man in the middle gets the relay password`);
      }
      if (t.tls === "none") out.push(`transport "${key}": tls=none on the route to relay.smarthost, which needs AUTH: mail on it will be deferred`);
    }
  }
  for (const l of config.listeners) {
    if (l.mode !== "mta" && l.tlsProfile === "compatible") {
      out.push(
        `listener ${l.address}:${l.port} (${l.mode}): tlsProfile compatible offers CBC and static-RSA suites (LUCKY13 class) to clients that send passwords; use intermediate`,
      );
    }
  }
  return out;
}
