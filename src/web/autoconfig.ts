/**
 * Client autoconfiguration (README "Client autoconfiguration"): the one WebApp answering
 * Thunderbird's autoconfig (autoconfig-thunderbird.ts), Microsoft's Autodiscover POX
 * (autoconfig-autodiscover.ts) and Apple's configuration profile (autoconfig-mobileconfig.ts),
 * all three from the same ClientSettings: the submission listeners Postern really has, the
 * mailbox servers the admin announced (web.incoming), the name clients connect to.
 *
 * An address outside our domains, or not an address at all, gets a 404 with a fixed body: no
 * document is ever filled with what the client sent, beyond a validated address of our domains.
 */
import type { Logger } from "../server/log.js";
import { autodiscoverAnswer, emailAddressOfAutodiscoverRequest } from "./autoconfig-autodiscover.js";
import { mobileconfigAnswer, type ProfileSigner } from "./autoconfig-mobileconfig.js";
import { type ClientSettings, ourAddress, ourDomainOfHost } from "./autoconfig-settings.js";
import { thunderbirdConfig } from "./autoconfig-thunderbird.js";
import { readRequestBody, sendText } from "./listener.js";
import type { WebApp, WebRequest } from "./types.js";

const THUNDERBIRD_PATHS = new Set(["/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"]);
const AUTODISCOVER_PATHS = new Set(["/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"]);
const MOBILECONFIG_PATH = "/apple/mobileconfig";
const MTA_STS_PATH = "/.well-known/mta-sts.txt";
/** Autodiscover requests are a few hundred bytes. */
const AUTODISCOVER_MAX_BODY = 8 * 1024;

const XML = { "content-type": "application/xml; charset=utf-8", "cache-control": "no-store" };

/** The fixed 404 for every address or domain that is not ours. */
const NOT_OURS = "no configuration for that address";

function methodIs(r: WebRequest, allowed: string[]): boolean {
  if (allowed.includes(r.req.method ?? "")) return true;
  sendText(r.res, 405, "method not allowed", { allow: allowed.join(", ") });
  return false;
}

export function createAutoconfigApp(settings: () => ClientSettings, log: Logger, signer?: ProfileSigner): WebApp {
  return {
    name: "autoconfig",
    async handle(r: WebRequest): Promise<boolean> {
      const path = r.url.pathname;
      if (THUNDERBIRD_PATHS.has(path)) {
        if (!methodIs(r, ["GET", "HEAD"])) return true;
        const s = settings();
        const raw = r.url.searchParams.get("emailaddress");
        // Without an address (autoconfig.DOMAIN/mail/config-v1.1.xml): the domain from the host name.
        const domain = raw === null ? ourDomainOfHost(r.req.headers.host, s.domains) : ourAddress(raw, s.domains)?.domain;
        if (!domain) {
          sendText(r.res, 404, NOT_OURS);
          return true;
        }
        log.debug({ event: "autoconfig", kind: "thunderbird", domain }, "autoconfig");
        r.res.writeHead(200, XML).end(thunderbirdConfig(s, domain));
        return true;
      }
      if (AUTODISCOVER_PATHS.has(path)) {
        if (!methodIs(r, ["POST"])) return true;
        const body = await readRequestBody(r.req, AUTODISCOVER_MAX_BODY);
        const s = settings();
        const who = ourAddress(emailAddressOfAutodiscoverRequest(body.toString("utf8")), s.domains);
        if (!who) {
          sendText(r.res, 404, NOT_OURS);
          return true;
        }
        log.debug({ event: "autoconfig", kind: "autodiscover", domain: who.domain }, "autodiscover");
        r.res.writeHead(200, XML).end(autodiscoverAnswer(s, who.address));
        return true;
      }
      if (path === MOBILECONFIG_PATH) {
        if (!methodIs(r, ["GET", "HEAD"])) return true;
        const s = settings();
        const who = ourAddress(r.url.searchParams.get("emailaddress"), s.domains);
        if (!who) {
          sendText(r.res, 404, NOT_OURS);
          return true;
        }
        const answer = await mobileconfigAnswer(s, who.address, signer);
        if (answer.kind === "none") {
          sendText(r.res, 404, answer.reason);
          return true;
        }
        log.debug({ event: "autoconfig", kind: "mobileconfig", domain: who.domain, signed: answer.signed }, "mobileconfig");
        r.res
          .writeHead(200, {
            "content-type": "application/x-apple-aspen-config",
            "content-disposition": `attachment; filename="${answer.filename}"`,
            "cache-control": "no-store",
          })
          .end(answer.body);
        return true;
      }
      if (path === MTA_STS_PATH) {
        const s = settings();
        const host = (r.req.headers.host ?? "").replace(/:\d+$/, "").toLowerCase();
        // RFC 8461 §3.2: only on the policy host mta-sts.DOMAIN of one of our domains.
        if (!s.mtaStsPolicy || !host.startsWith("mta-sts.") || !s.domains.includes(host.slice("mta-sts.".length))) return false;
        if (!methodIs(r, ["GET", "HEAD"])) return true;
        r.res.writeHead(200, { "content-type": "text/plain; charset=utf-8", "cache-control": "max-age=3600" }).end(s.mtaStsPolicy);
        return true;
      }
      return false;
    },
  };
}
