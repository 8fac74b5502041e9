/**
 * The one configuration schema: every limit named, with defaults near Postfix's.
 * `postern config check` prints the parsed result, so what is here is what the admin sees.
 */
import { z } from "zod";
import { isIP } from "node:net";

const listenerMode = z.enum(["mta", "submission", "submissions"]);

const cidr = z.string().refine((s) => {
  const [ip, bits, ...rest] = s.split("/");
  if (rest.length > 0 || !ip || isIP(ip) === 0) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n <= (isIP(ip) === 4 ? 32 : 128);
}, "must be an IP address or CIDR such as 192.0.2.0/24 or 2001:db8::/32");

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "must be host:port");

const listener = z.strictObject({
  address: z.string().default("127.0.0.1"),
  port: z.number().int().min(0).max(65535),
  mode: listenerMode.default("mta"),
  /** Allow AUTH before TLS on this listener. Off by default: passwords never cross in clear. */
  authWithoutTls: z.boolean().default(false),
  /** Offer AUTH on an `mta` listener (after TLS). Postfix: smtpd_sasl_auth_enable on port 25. */
  auth: z.boolean().optional(),
});

const limits = z
  .strictObject({
    /** RFC 5321 §4.5.3.1.4: 512 octets including CRLF. */
    commandLineLength: z.number().int().min(512).default(512),
    /** RFC 4954 §4: AUTH responses up to 12,288 octets. */
    authLineLength: z.number().int().min(12288).default(12288),
    /** RFC 5321 §4.5.3.1.6: 1000 octets including CRLF. */
    textLineLength: z.number().int().min(1000).default(1000),
    /** RFC 5321 §4.5.3.1.8: at least 100 recipients must be accepted. */
    recipients: z.number().int().min(1).default(100),
    messageSize: z.number().int().min(1024).default(25 * 1024 * 1024),
    /** Postfix smtpd_hard_error_limit. */
    errors: z.number().int().min(1).default(20),
    /** Postfix smtpd_junk_command_limit: NOOP/RSET/VRFY/HELP... */
    junkCommands: z.number().int().min(1).default(100),
    /** Failed AUTH attempts on one connection before 421 (RFC 4954 §4: not before 3). */
    authFailures: z.number().int().min(3).max(6).default(3),
    /** Delay before answering a failed AUTH (Dovecot auth_failure_delay). */
    authFailureDelayMs: z.number().int().min(0).default(2000),
    /** RFC 5321 §4.5.3.2.7: at least 5 minutes. */
    idleTimeoutMs: z.number().int().min(1000).default(300_000),
    /** Whole DATA phase deadline (RFC 5321 §4.5.3.2.6 asks ≥10 min for the final dot). */
    dataTimeoutMs: z.number().int().min(1000).default(600_000),
    /** Header section inspected (From:, Message-ID:, Received: count) at most this many octets. */
    headerBytes: z.number().int().min(4096).default(256 * 1024),
    /** RFC 5321 §6.3: a message seen with this many Received: headers is looping. */
    maxReceivedHeaders: z.number().int().min(10).default(100),
  })
  .prefault({});

const tlsConfig = z
  .strictObject({
    cert: z.string().optional(),
    key: z.string().optional(),
    minVersion: z.enum(["TLSv1.2", "TLSv1.3"]).default("TLSv1.2"),
  })
  .refine((t) => (t.cert === undefined) === (t.key === undefined), "tls.cert and tls.key go together")
  .prefault({});

const smarthost = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(25),
  tls: z.enum(["none", "starttls-opportunistic", "starttls-required", "implicit"]).default("starttls-opportunistic"),
  rejectUnauthorized: z.boolean().default(false),
  auth: z
    .strictObject({
      username: z.string().min(1),
      password: z.string().min(1),
      mechanism: z.string().default("auto"),
    })
    .optional(),
});

const relay = z
  .strictObject({
    /** "host:port" shorthand or the full object. */
    smarthost: z.union([hostPort, smarthost]).optional(),
  })
  .prefault({});

const queue = z
  .strictObject({
    firstRetrySec: z.number().int().min(1).default(300),
    maxBackoffSec: z.number().int().min(1).default(4000),
    maxLifetimeSec: z.number().int().min(60).default(5 * 24 * 3600),
    concurrency: z.number().int().min(1).default(20),
    /** fsync spool and Maildir writes. Only tests and benchmarks of the raw engine turn this off. */
    fsync: z.boolean().default(true),
  })
  .prefault({});

const smtp = z
  .strictObject({
    /** SECURITY.md rule 1: bare CR/LF in DATA is refused; "normalize" rewrites it to CRLF instead. */
    bareLineEnds: z.enum(["reject", "normalize"]).default("reject"),
    /** Offer DIGEST-MD5 (RFC 6331 made it historic; only for old clients). */
    digestMd5: z.boolean().default(false),
    /** PLAIN authzid different from authcid: refused unless the authcid is listed here. */
    authzidAdmins: z.array(z.string()).default([]),
    /** Banner text after the host name. */
    banner: z.string().default("ESMTP Postern"),
  })
  .prefault({});

export const configSchema = z.strictObject({
  hostname: z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/, "must be a host name"),
  dataDir: z.string().default("./data"),
  domains: z.array(z.string().min(1)).min(1),
  /** IP literals ([192.0.2.1]) accepted as local only when listed here (SECURITY.md rule 7). */
  localAddressLiterals: z.array(z.string()).default([]),
  mynetworks: z.array(cidr).default([]),
  listeners: z.array(listener).min(1),
  tls: tlsConfig,
  relay,
  delivery: z
    .strictObject({ maildir: z.string().default("./data/mail/{domain}/{localpart}") })
    .prefault({}),
  auth: z
    .strictObject({
      backend: z.enum(["sqlite"]).default("sqlite"),
      /** Verified-credentials cache TTL (Dovecot auth_cache_ttl); 0 turns it off. */
      cacheTtlSec: z.number().int().min(0).default(60),
    })
    .prefault({}),
  limits,
  smtp,
  queue,
  log: z
    .strictObject({
      level: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
      format: z.enum(["json", "pretty"]).default("json"),
    })
    .prefault({}),
});

export type Config = z.infer<typeof configSchema>;
export type ListenerConfig = z.infer<typeof listener>;
export type ListenerMode = z.infer<typeof listenerMode>;
export type SmarthostConfig = z.infer<typeof smarthost>;
export type LimitsConfig = Config["limits"];
