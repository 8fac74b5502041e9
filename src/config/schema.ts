/**
 * The one configuration schema: every limit named, with defaults near Postfix's.
 * `postern config check` prints the parsed result, so what is here is what the admin sees.
 */
import { z } from "zod";
import { isIP } from "node:net";
import { availableParallelism, hostname as osHostname } from "node:os";
import { parseTransport } from "../delivery/transport.js";
import { defaultTlsProfile, TLS_PROFILES } from "../server/tls.js";
import { LISTENER_MODES } from "../base/listener-mode.js";
import { DEFAULT_RECIPIENT_DELIMITER } from "../base/mailbox.js";

const listenerMode = z.enum(LISTENER_MODES);

const cidr = z.string().refine((s) => {
  const [ip, bits, ...rest] = s.split("/");
  if (rest.length > 0 || !ip || isIP(ip) === 0) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n <= (isIP(ip) === 4 ? 32 : 128);
}, "must be an IP address or CIDR such as 192.0.2.0/24 or 2001:db8::/32");

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "must be host:port");

const listener = z
  .strictObject({
    address: z.string().default("127.0.0.1"),
    port: z.number().int().min(0).max(65535),
    mode: listenerMode.default("mta"),
    /** Allow AUTH before TLS on this listener. Off by default: passwords never cross in clear. */
    authWithoutTls: z.boolean().default(false),
    /** Offer AUTH on an `mta` listener (after TLS). Postfix: smtpd_sasl_auth_enable on port 25. */
    auth: z.boolean().optional(),
    /** Expect a PROXY protocol v1/v2 header from a trusted proxy before anything else. */
    proxyProtocol: z.boolean().default(false),
    /** Proxies allowed to send that header here; defaults to the top-level trustedProxies. */
    trustedProxies: z.array(cidr).optional(),
    /**
     * Protocols and ciphers (src/server/tls.ts): modern (TLS 1.3), intermediate (TLS 1.3, TLS 1.2
     * ECDHE+AEAD), compatible (Node's default list, CBC included). Default: compatible on mta,
     * intermediate on submission ports.
     */
    tlsProfile: z.enum(TLS_PROFILES).optional(),
  })
  .transform((l) => ({ ...l, tlsProfile: l.tlsProfile ?? defaultTlsProfile(l.mode) }));

/** Concurrent connections and connection rate (Postfix smtpd_client_connection_count_limit, anvil). */
const connectionLimits = z
  .strictObject({
    /** All concurrent connections, exempt clients included. */
    total: z.number().int().min(1).default(1000),
    /** Concurrent connections from one client IP (Postfix default 50). */
    perIp: z.number().int().min(1).default(50),
    /** Connection attempts per IP per window; 0 = off, as Postfix's smtpd_client_connection_rate_limit. */
    ratePerIp: z.number().int().min(0).default(0),
    /** Postfix anvil_rate_time_unit. */
    rateWindowSec: z.number().int().min(1).default(60),
  })
  .prefault({});

/** Growing delay for clients that keep erring (Postfix smtpd_soft_error_limit, smtpd_error_sleep_time). */
const tarpit = z
  .strictObject({
    softErrors: z.number().int().min(1).default(10),
    softJunk: z.number().int().min(1).default(50),
    /** Each error past the soft limit waits this much longer than the one before. */
    stepMs: z.number().int().min(0).default(1000),
    maxDelayMs: z.number().int().min(0).default(10_000),
  })
  .prefault({});

/** Minimum DATA transfer rate (Postfix smtpd_min_data_rate = 500 bytes/s); bytesPerSec 0 = off. */
const minDataRate = z
  .strictObject({
    bytesPerSec: z.number().int().min(0).default(500),
    windowMs: z.number().int().min(100).default(30_000),
  })
  .prefault({});

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
    messageSize: z
      .number()
      .int()
      .min(1024)
      .default(25 * 1024 * 1024),
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
    connections: connectionLimits,
    /** Skip per-IP connection/rate limits and tarpit delays, never per-connection caps (smtpd_client_event_limit_exceptions). */
    exempt: z.array(cidr).default([]),
    /** Commands before AUTH succeeds on submission ports; then 421 4.7.0. 0 = no limit. */
    unauthCommands: z.number().int().min(0).default(10),
    tarpit,
    minDataRate,
    /** STARTTLS and implicit-TLS handshake deadline. */
    tlsHandshakeTimeoutMs: z.number().int().min(100).default(30_000),
    /** Whole-session deadline, then 421 4.4.2; 0 = none. */
    sessionLifetimeMs: z.number().int().min(0).default(3_600_000),
    /** A PROXY protocol header must arrive this soon after connect. */
    proxyHeaderTimeoutMs: z.number().int().min(100).default(5000),
    /** How often the `limits` counters line is logged (only when something changed). */
    logIntervalMs: z.number().int().min(100).default(60_000),
    /** Header section inspected (From:, Message-ID:, Received: count) at most this many octets. */
    headerBytes: z
      .number()
      .int()
      .min(4096)
      .default(256 * 1024),
    /** RFC 5321 §6.3: a message seen with this many Received: headers is looping. */
    maxReceivedHeaders: z.number().int().min(10).default(100),
    /**
     * Pause before the 220 greeting on `mta` listeners: a client that talks during it is an early
     * talker (554 5.5.0, SECURITY.md rule 4). Postfix postscreen_greet_wait is 6s when postscreen is on.
     */
    greetPauseMs: z.number().int().min(0).max(30_000).default(300),
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

const smarthost = z
  .strictObject({
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535).default(25),
    tls: z.enum(["none", "starttls-opportunistic", "starttls-required", "implicit"]).default("starttls-opportunistic"),
    /**
     * Check the relay's certificate chain and that it names `servername`. Default: on when `auth`
     * is set (a man in the middle would otherwise get the password), off otherwise (RFC 7435).
     */
    verify: z.boolean().optional(),
    /** The old name of `verify`. */
    rejectUnauthorized: z.boolean().optional(),
    /** The name the certificate must carry (and SNI); default `host`. */
    servername: z.string().min(1).optional(),
    /** CA bundle (PEM) for a relay with a private CA; default outbound.caFile, else the system's. */
    caFile: z.string().min(1).optional(),
    auth: z
      .strictObject({
        username: z.string().min(1),
        password: z.string().min(1),
        mechanism: z.string().default("auto"),
      })
      .optional(),
  })
  .refine((s) => s.verify === undefined || s.rejectUnauthorized === undefined || s.verify === s.rejectUnauthorized, "verify and rejectUnauthorized disagree")
  .transform(({ rejectUnauthorized, ...s }) => ({ ...s, verify: s.verify ?? rejectUnauthorized ?? s.auth !== undefined }));

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
    maxLifetimeSec: z
      .number()
      .int()
      .min(60)
      .default(5 * 24 * 3600),
    concurrency: z.number().int().min(1).default(20),
    /** fsync spool and Maildir writes. Only tests and benchmarks of the raw engine turn this off. */
    fsync: z.boolean().default(true),
  })
  .prefault({});

/** A transport table value, e.g. "mx", "smarthost relay.example:587 tls=must", "lmtp unix:/run/dovecot/lmtp". */
const transportSpec = z.string().superRefine((v, ctx) => {
  try {
    parseTransport(v);
  } catch (err) {
    ctx.addIssue({ code: "custom", message: (err as Error).message });
  }
});

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
    /**
     * Offer REQUIRETLS (RFC 8689) on every listener once the session is TLS (after STARTTLS, or on
     * the implicit-TLS port); never in clear (§2). Off: the MAIL parameter is refused (555 5.5.4).
     */
    requireTls: z.boolean().default(true),
  })
  .prefault({});

/** Credential backends (src/auth): which one, and where it lives. */
const authBackendName = z.enum(["sqlite", "passwd-file", "dovecot", "saslauthd"]);
const authBackendFields = {
  /** passwd-file: the Dovecot passwd-file. */
  path: z.string().min(1).optional(),
  /** dovecot: "unix:/run/dovecot/auth-client" or "host:port"; saslauthd: the mux socket path. */
  socket: z.string().min(1).optional(),
  /** Service name passed to Dovecot/saslauthd (PAM service for saslauthd -a pam). */
  service: z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/)
    .default("smtp"),
  /** saslauthd realm. */
  realm: z.string().optional(),
  /** Per request to Dovecot/saslauthd. */
  timeoutMs: z.number().int().min(100).default(10_000),
  /**
   * dovecot: a SCRAM server-first (Dovecot's, or a fake one for a login Dovecot refuses) leaves no
   * sooner than this after the client-first; must exceed Dovecot's time to answer a failure
   * (auth_failure_delay + 0.5 s). docs/SECURITY.md 11.4.
   */
  scramHoldMs: z.number().int().min(0).default(1000),
};
function requireBackendTarget(b: { backend: string; path?: string; socket?: string }, ctx: z.RefinementCtx): void {
  if (b.backend === "passwd-file" && !b.path) ctx.addIssue({ code: "custom", path: ["path"], message: "passwd-file needs path" });
  if ((b.backend === "dovecot" || b.backend === "saslauthd") && !b.socket)
    ctx.addIssue({ code: "custom", path: ["socket"], message: `${b.backend} needs socket` });
}
const authBackendOf = z.strictObject({ ...authBackendFields, backend: authBackendName }).superRefine(requireBackendTarget);

/** Bearer tokens (OAUTHBEARER, XOAUTH2) as JWTs from an OIDC issuer (src/auth/oauth-tokens.ts). */
const authOAuth = z.strictObject({
  /** The issuer (`iss`); its discovery document names the keys. HTTPS only. */
  issuer: z.url({ protocol: /^https$/ }),
  /** The audience (`aud`) tokens for this server carry. */
  audience: z.string().min(1),
  /** A scope every token must carry (`scope` or `scp`). */
  scope: z.string().min(1).optional(),
  /** The claim naming the login (an address). */
  claim: z.string().min(1).default("email"),
  /** The JWKS address; skips discovery. HTTPS only. */
  jwksUri: z.url({ protocol: /^https$/ }).optional(),
  /** PEM file of extra CAs trusted for the issuer's HTTPS. */
  caFile: z.string().min(1).optional(),
  /** After a fetch of the keys, a token naming an unknown `kid` fetches them again no sooner than this. */
  keysRefreshCooldownSec: z.number().int().min(0).default(30),
});

/** Password-guessing defence across connections (src/policy/auth-throttle.ts). */
const authThrottle = z
  .strictObject({
    windowSec: z.number().int().min(1).default(600),
    /** Failed AUTHs from one IP in the window before AUTH from it is refused. */
    ipFailures: z.number().int().min(1).default(10),
    /** Failed AUTHs for one account from one network block before that pair is refused. */
    accountFailures: z.number().int().min(1).default(5),
    lockoutSec: z.number().int().min(1).default(900),
    /** Growing per-IP penalty: base after the 2nd failure, doubling, up to the max (SECURITY.md rule 13). */
    penaltyBaseMs: z.number().int().min(0).default(1000),
    maxPenaltyMs: z.number().int().min(0).default(15_000),
    ipv4Prefix: z.number().int().min(8).max(32).default(24),
    ipv6Prefix: z.number().int().min(16).max(128).default(64),
  })
  .prefault({});

/**
 * Where users, counters (and the queue) live: the embedded SQLite + file spool, or one PostgreSQL
 * shared by several nodes (src/store/pg).
 */
const store = z
  .strictObject({
    backend: z.enum(["sqlite", "postgres"]).default("sqlite"),
    /** postgres://user:password@host:port/database; required with backend postgres. */
    url: z
      .string()
      .regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
      .optional(),
    /** Connections this node keeps open to the database. */
    poolSize: z.number().int().min(1).default(10),
    /** Names this node as a lease holder; default: the machine's host name. */
    nodeName: z.string().min(1).optional(),
    /** Queue leases (src/store/pg/queue.ts): renewed while held; a dead node's lapse after this long and are taken over. */
    leaseSec: z.number().int().min(1).default(30),
    /** How often each node polls the shared queue for due messages (another node's, or a dead node's). */
    pollMs: z.number().int().min(10).default(1000),
  })
  .superRefine((s, ctx) => {
    if (s.backend === "postgres" && s.url === undefined)
      ctx.addIssue({ code: "custom", path: ["url"], message: "store.url is required with backend postgres" });
  })
  .transform((s) => ({ ...s, nodeName: s.nodeName ?? osHostname() }))
  .prefault({});

export const configSchema = z.strictObject({
  hostname: z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/, "must be a host name"),
  dataDir: z.string().default("./data"),
  store,
  domains: z.array(z.string().min(1)).min(1),
  /** IP literals ([192.0.2.1]) accepted as local only when listed here (SECURITY.md rule 7). */
  localAddressLiterals: z.array(z.string()).default([]),
  mynetworks: z.array(cidr).default([]),
  /** Load balancers whose PROXY protocol headers are believed (listeners with proxyProtocol: true). */
  trustedProxies: z.array(cidr).default([]),
  listeners: z.array(listener).min(1),
  tls: tlsConfig,
  relay,
  delivery: z.strictObject({ maildir: z.string().default("./data/mail/{domain}/{localpart}") }).prefault({}),
  auth: z
    .strictObject({
      ...authBackendFields,
      backend: authBackendName.default("sqlite"),
      /** Verified-credentials cache TTL (Dovecot auth_cache_ttl); 0 turns it off. */
      cacheTtlSec: z.number().int().min(0).default(60),
      /** SQLite store: users without their own setting log in with app passwords only (`postern user require-app-passwords`). */
      requireAppPasswords: z.boolean().default(false),
      /** Overrides limits.authFailureDelayMs when set (the issue's `auth.failureDelayMs`). */
      failureDelayMs: z.number().int().min(0).optional(),
      /** A different backend per login domain: { "example.net": { backend: passwd-file, path: … } }. */
      domains: z.record(z.string().min(1), authBackendOf).default({}),
      throttle: authThrottle,
      /** Absent: no OAUTHBEARER/XOAUTH2. */
      oauth: authOAuth.optional(),
    })
    .superRefine(requireBackendTarget)
    .prefault({}),
  /** Per authenticated user (src/policy/send-limits.ts); 0 turns a limit off. */
  sendLimits: z
    .strictObject({
      messagesPerHour: z.number().int().min(0).default(1000),
      recipientsPerHour: z.number().int().min(0).default(5000),
    })
    .prefault({}),
  limits,
  smtp,
  queue,
  /** `postern sendmail`'s unix socket (src/server/local-submit.ts); off unless `socket` is set. */
  localSubmit: z
    .strictObject({
      /** Path; relative paths are inside dataDir. */
      socket: z.string().min(1).optional(),
      /** Octal file mode as a string ("0660": owner and group may submit). YAML 0660 unquoted is decimal. */
      mode: z
        .string()
        .regex(/^0?[0-7]{3}$/, 'must be an octal mode such as "0660"')
        .default("0660"),
      /** Group owning the socket: its members may submit (Postfix's postdrop group). */
      group: z.string().min(1).optional(),
    })
    .prefault({}),
  /** HTTP listener for /metrics (Prometheus) and /healthz; off unless `port` is set. */
  admin: z
    .strictObject({
      address: z.string().default("127.0.0.1"),
      port: z.number().int().min(0).max(65535).optional(),
    })
    .prefault({}),
  /**
   * The HTTPS web face (src/web, README "Client autoconfiguration"): client autoconfiguration and
   * the web UI; off unless `port` is set. TLS with the server's certificate.
   */
  web: z
    .strictObject({
      address: z.string().default("127.0.0.1"),
      port: z.number().int().min(0).max(65535).optional(),
      /** The name clients are told to connect to (SMTP, and the web face itself). Default: hostname. */
      hostname: z.string().min(1).optional(),
      /** Mailbox servers to announce (Postern serves no IMAP/POP3): "host:port" each. */
      incoming: z
        .strictObject({
          imap: hostPort.optional(),
          imaps: hostPort.optional(),
          pop3: hostPort.optional(),
          pop3s: hostPort.optional(),
        })
        .optional(),
      /**
       * MTA-STS (RFC 8461 §3.2): serve the policy at https://mta-sts.DOMAIN/.well-known/mta-sts.txt
       * for our domains (the mta-sts.DOMAIN name must point here, on port 443). Absent: not served.
       */
      mtaSts: z
        .strictObject({
          mode: z.enum(["testing", "enforce", "none"]).default("testing"),
          /** RFC 8461 §3.2: at most 31557600; weeks are usual. */
          maxAgeSec: z.number().int().min(86_400).max(31_557_600).default(604_800),
        })
        .optional(),
      /** Users of the SQLite store who may use the admin pages (/ui/admin), logging in with their main password. */
      admins: z.array(z.string().min(3)).default([]),
      /** Client networks the admin pages answer; the self-service pages answer any user of the store. */
      adminFrom: z.array(cidr).default(["127.0.0.0/8", "::1/128"]),
      /** Web login sessions end after this long idle, and this long after login whatever happens. */
      sessionIdleSec: z.number().int().min(60).default(1800),
      sessionMaxSec: z.number().int().min(60).default(43_200),
    })
    .prefault({}),
  /** Privilege drop after binding (root binds 25/587/465, then runs as `user`) and shutdown bound. */
  process: z
    .strictObject({
      user: z.string().min(1).optional(),
      /** Default: the user's primary group. */
      group: z.string().min(1).optional(),
      /** SIGTERM: how long in-flight transactions may take before their connections are cut. */
      shutdownGraceMs: z.number().int().min(0).default(30_000),
      /**
       * Processes serving SMTP sessions (src/server/workers.ts): one per core by default; 1 is a
       * single process doing everything, as before workers existed.
       */
      workers: z
        .number()
        .int()
        .min(1)
        .max(256)
        .default(() => availableParallelism()),
    })
    .prefault({}),
  /** Delivery status notifications (RFC 3464), src/queue/bounce.ts. */
  bounces: z
    .strictObject({
      /** Delay warning once per message this long after arrival (Postfix delay_warning_time); 0 = off. */
      delayWarningSec: z
        .number()
        .int()
        .min(0)
        .default(4 * 3600),
    })
    .prefault({}),
  /** Routing (src/delivery): transport table, MX lookups, outbound sessions, aliases. See README "Routing". */
  transport: z.record(z.string().min(1), transportSpec).default({}),
  dns: z
    .strictObject({
      /** Resolvers as "host" or "host:port"; empty: the system's (/etc/resolv.conf). */
      servers: z
        .array(z.string().regex(/^(\[[0-9a-fA-F:.]+\](:\d{1,5})?|[0-9a-fA-F:.]+|[0-9.]+:\d{1,5})$/, "must be an IP address, optionally with :port"))
        .default([]),
      timeoutMs: z.number().int().min(100).default(5000),
      /** Our public addresses: an MX resolving to one is a loop (RFC 5321 §5.1). */
      ownAddresses: z.array(z.string()).default([]),
      /**
       * DANE (RFC 7672): "trust-ad" believes the AD bit of the resolvers above. Off by default: the
       * AD bit is only as trustworthy as the path to a validating resolver, so trust it only when
       * that resolver is local or otherwise trusted (RFC 6840 §5.7, RFC 7672 §1.3).
       */
      dnssec: z.enum(["off", "trust-ad"]).default("off"),
    })
    .prefault({}),
  /** Checks of mail from clients neither authenticated nor in mynetworks (src/inbound, README "Inbound checks"). */
  inbound: z
    .strictObject({
      /** enforce: DMARC p=reject fails get 550 5.7.1, p=quarantine a header; report: the header only; off: no checks. */
      dmarc: z.enum(["enforce", "report", "off"]).default("report"),
      /** Refuse MAIL (550 5.7.23, RFC 7372) when the sender's SPF record says fail (-all). */
      spfRejectFail: z.boolean().default(false),
      /** DNS queries one message's checks may make, answers from the cache not counted. */
      maxLookups: z.number().int().min(1).default(40),
      /** Wall time for one message's DNS queries together; past it, results are temperror. */
      timeBudgetMs: z.number().int().min(100).default(15_000),
      /** Longest reuse of a DNS answer: A/AAAA are kept for their TTL up to this, other types (no TTL from node) this long. */
      dnsCacheSec: z.number().int().min(0).default(300),
    })
    .prefault({}),
  /** DKIM signing (src/dkim, README "DKIM signing"): mail from logins whose From: domain has active keys in the store. */
  dkim: z
    .strictObject({
      /** The key store; relative paths are inside dataDir. Default: <dataDir>/dkim. */
      keysDir: z.string().min(1).optional(),
      /** false: sign nothing (the keys stay, `postern dkim dns` still lists them). */
      sign: z.boolean().default(true),
      /** How long `postern dkim dns` keeps listing a retired key, for mail signed before the switch. */
      retiredGraceDays: z.number().int().min(0).default(7),
    })
    .prefault({}),
  outbound: z
    .strictObject({
      /** Port of MX hosts (25; test rigs point it at a sink). */
      mxPort: z.number().int().min(1).max(65535).default(25),
      /** Sessions in use at once (Postfix default_process_limit) and per destination. */
      maxConnections: z.number().int().min(1).default(20),
      maxPerDestination: z.number().int().min(1).default(5),
      /** Keep a finished session open for the next message this long (Postfix smtp_connection_cache_time_limit); 0 = no reuse. */
      idleTimeoutMs: z.number().int().min(0).default(2000),
      maxMessagesPerSession: z.number().int().min(1).default(100),
      /** CA bundle (PEM file) for routes with verify=yes; default: the system's. */
      caFile: z.string().optional(),
      /** MTA-STS (RFC 8461, src/delivery/tls-policy/mta-sts.ts): policies of recipient domains, fetched and cached. */
      mtaSts: z
        .strictObject({
          enabled: z.boolean().default(true),
          /** Policy cache; relative paths are inside dataDir. Default: <dataDir>/mta-sts. */
          cacheDir: z.string().min(1).optional(),
          /** Port of the policy hosts mta-sts.DOMAIN: 443 (test rigs only change it). */
          httpsPort: z.number().int().min(1).max(65535).default(443),
          /** The whole policy fetch; RFC 8461 §3.3 asks for a short timeout. */
          fetchTimeoutMs: z.number().int().min(100).default(10_000),
          /** CA bundle (PEM file) for the policy hosts' certificates; default outbound.caFile, else the system's. */
          caFile: z.string().min(1).optional(),
        })
        .prefault({}),
      /**
       * TLS-RPT (RFC 8460, src/delivery/tls-policy/tls-report.ts): daily reports to the domains we
       * deliver to. Off by default: a stranger's DNS then chooses where we send mail and HTTPS
       * POSTs each day, and the reports reveal our sending addresses and volume.
       */
      tlsRpt: z
        .strictObject({
          enabled: z.boolean().default(false),
          /** organization-name (§4.4); default: hostname. */
          organization: z.string().min(1).optional(),
          /** contact-info (§4.4) and From: of mailed reports; default: postmaster@hostname. */
          contact: z.string().min(1).optional(),
          /** Where the day's counts are kept; relative paths are inside dataDir. Default: <dataDir>/tls-rpt. */
          stateDir: z.string().min(1).optional(),
          /** Minutes after UTC midnight when the previous day's reports go out. */
          sendAfterMinutes: z.number().int().min(0).max(1380).default(60),
        })
        .prefault({}),
    })
    .prefault({}),
  aliases: z
    .strictObject({
      /** "alias: target, target" lines; "@domain: target" is a catch-all. Re-read when it changes. */
      file: z.string().optional(),
      /** RFC 5233 sub-addressing separator (john+lists → john); "" turns it off. */
      recipientDelimiter: z.string().max(1).default(DEFAULT_RECIPIENT_DELIMITER),
    })
    .prefault({}),
  log: z
    .strictObject({
      level: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
      format: z.enum(["json", "pretty"]).default("json"),
    })
    .prefault({}),
});

export type Config = z.infer<typeof configSchema>;
export type ListenerConfig = z.infer<typeof listener>;
export type LimitsConfig = Config["limits"];
export type StoreConfig = Config["store"];
