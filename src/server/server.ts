/**
 * Wiring: config → user store, spool, queue runner, deliverer, policy, listeners.
 * Nothing below this folder knows about sockets, config files or the CLI.
 */
import { createServer as createTcpServer, type Socket, type AddressInfo } from "node:net";
import { join } from "node:path";
import type { Config, ListenerConfig } from "../config/schema.js";
import { SqliteUserStore } from "../auth/sqlite-store.js";
import { PgAliases } from "../store/pg/aliases.js";
import { openPgPool } from "../store/pg/pool.js";
import { requireCurrentSchema } from "../store/pg/migrations.js";
import { PgUserStore } from "../store/pg/users.js";
import type { UserStore } from "../store/user-store.js";
import { createAuthWiring } from "./auth-wiring.js";
import { RelayPolicy } from "../policy/relay.js";
import { domainOf } from "../base/domain.js";
import { NetworkList } from "../policy/networks.js";
import { createPolicyPorts } from "../policy/session-ports.js";
import { openQueueStore, type QueueStoreHandle } from "./queue-store-wiring.js";
import type { SpoolFault } from "../queue/spool-writer.js";
import { QueueRunner } from "../queue/scheduler.js";
import { DsnNotifier } from "../queue/bounce.js";
import { QueueAdmin } from "../queue/admin.js";
import { startControlServer } from "./control.js";
import { createDeliverer } from "../delivery/router.js";
import { smarthostFromConfig } from "../delivery/smarthost.js";
import { createRouting } from "./routing-wiring.js";
import { Session, newSessionId, type SessionPorts, type SessionSettings } from "../smtp/session.js";
import { SmtpConnection } from "./connection.js";
import { acceptConnection, connectionEnded, type AcceptOptions, type ClientInfo } from "./accept.js";
import { connectionGuard, createClientLimits } from "./limits-wiring.js";
import type { LimitsSnapshot } from "../policy/client-limits.js";
import { ensureCertificate, loadTlsMaterial, secureContextOf, type TlsMaterial } from "./tls.js";
import { lockDataDir, waitForOldWorkers, DataDirBusyError, type DataDirLock } from "../queue/data-lock.js";
import { dropPrivileges, lookupIdentity, UnknownIdentityError, type Identity } from "./privileges.js";
import { StartupError, checkTlsPair, listenError, type ConfigSource } from "./startup-errors.js";
import { operations, type Operations } from "./operate.js";
import { startLocalSubmitFromConfig } from "./local-submit.js";
import { createInboundWiring } from "./inbound-wiring.js";
import { createDkimSigner } from "./dkim-wiring.js";
import { createTlsReportWiring } from "./tls-report-wiring.js";
import { startWebFromConfig } from "./web-wiring.js";
import { bindHeld, closeHeld, serveHeld, type HeldListener } from "./held-listener.js";
import type { Logger } from "./log.js";
import type { HourlyCounters } from "./hourly-counters.js";
import { startWorkerPool, type WorkerPool } from "./workers.js";
import { shareLimits, type SharedLimits, type SharedLimitEvent } from "./shared-limits.js";

export interface RunningServer {
  listeners: { mode: ListenerConfig["mode"]; address: string; port: number }[];
  store: UserStore;
  queue: QueueRunner;
  /** Connection-limit counters (for metrics; also logged as `event: "limits"`). */
  limits(): LimitsSnapshot;
  /** Reload, drain and session counts (src/server/operate.ts): SIGHUP and SIGTERM in serve.ts. */
  ops: Operations;
  close(): Promise<void>;
  /** The primary of several processes (process.workers > 1): its workers serve the SMTP sessions. */
  workers?: WorkerPool;
  /** In a worker: serves a connection the primary accepted on listener `index` (config.listeners order). */
  serveHandedOver?(index: number, socket: Socket): void;
  /** In a worker: applies the other processes' throttle and limit counts (shared-limits.ts). */
  sharedLimits?: SharedLimits;
}

/** How this process takes part when process.workers > 1 (src/server/workers.ts). */
export type ProcessRole =
  | { kind: "primary" }
  | {
      kind: "worker";
      /** The primary's certificate and key, read as root when started so (the key may be root's alone). */
      tlsMaterial: TlsMaterial;
      /** A message this worker committed: the primary's queue runner delivers it. */
      queued(id: string): void;
      /** A change to the AUTH throttle, send limits or connection counts, for the other processes. */
      publish(event: SharedLimitEvent): void;
    };

export interface StartOptions {
  /** Where the configuration came from: error messages name the file (or the demo). */
  source?: ConfigSource;
  /** TEST ONLY: a disk fault for the spool writer (test/e2e/helpers/serve-with-fault.ts). */
  spoolFault?: SpoolFault;
  /** Per-hour counts fed by the log (Metrics.hourly): the web dashboard's chart. */
  hourly?: HourlyCounters;
  /** Absent: one process does everything (process.workers: 1). */
  role?: ProcessRole;
}

/**
 * Starts in an order that matters (issue 12, docs/SECURITY.md 11.9):
 *   1. lock the data directory: a second server stops here, having changed nothing;
 *   2. check process.user and a configured certificate, still as root (the key may be root's);
 *   3. bind the listeners (below 1024 needs root) without serving anything accepted yet;
 *   4. hand the data directory to process.user and drop root, in one synchronous step;
 *   5. as that user: user store, spool recovery (and its in-use marker), queue, control socket;
 *   6. start the queue and serve the connections, held until now.
 * A start that fails undoes what it did, in reverse: the lock and the in-use marker go with it.
 */
export async function startServer(config: Config, log: Logger, opts: StartOptions = {}): Promise<RunningServer> {
  const source = opts.source ?? {};
  if (opts.role?.kind === "worker") {
    // The primary holds the lock, recovered the spool and dropped root before forking this worker.
    return startLockedOrUndo(config, log, source, undefined, [], opts);
  }
  let lock: DataDirLock;
  try {
    lock = lockDataDir(config.dataDir);
  } catch (err) {
    if (!(err instanceof DataDirBusyError)) {
      throw new StartupError(
        `cannot lock the data directory ${config.dataDir}: ${err instanceof Error ? err.message : String(err)}`,
        "dataDir",
        "dataDir must be a directory that the user postern starts as may create and write",
        source,
      );
    }
    const pid = err.holderPid;
    const fix = source.demo
      ? `stop the demo that runs there${pid !== undefined ? ` (kill -TERM ${pid})` : ""}, or start this one from another folder (the demo keeps its data in ./data)`
      : `stop that server first${pid !== undefined ? ` (kill -TERM ${pid})` : ""}, or give this one a dataDir of its own`;
    throw new StartupError(err.message, "dataDir", fix, source);
  }
  return startLockedOrUndo(config, log, source, lock, [() => lock.release()], opts);
}

/** startLocked; a start that fails undoes the steps it recorded in `undo`, in reverse, and throws. */
async function startLockedOrUndo(
  config: Config,
  log: Logger,
  source: ConfigSource,
  lock: DataDirLock | undefined,
  undo: (() => unknown)[],
  opts: StartOptions,
): Promise<RunningServer> {
  try {
    return await startLocked(config, log, source, lock, undo, opts.spoolFault, opts.hourly, opts.role);
  } catch (err) {
    for (const step of undo.reverse())
      await Promise.resolve()
        .then(step)
        .catch(() => undefined);
    throw err;
  }
}

/** An SMTP listener, bound but serving nothing until `accept` is set (held-listener.ts). */
interface BoundListener extends HeldListener {
  lc: ListenerConfig;
}

async function bindListener(lc: ListenerConfig, index: number, source: ConfigSource, log: Logger, handOver = false): Promise<BoundListener> {
  // Plain TCP on every port: on 465 the PROXY header comes before the TLS handshake (accept.ts).
  // noDelay: replies are written once per pipelined group (connection.ts), so Nagle's algorithm
  // would only hold a reply back until the client's delayed ACK (up to 40 ms on Linux).
  // handOver (the primary of several processes): not a byte is read here, the worker reads them all.
  try {
    // The same object: its connection handler reads `accept` from it.
    const onError = (err: Error) => log.warn({ event: "listener-error", mode: lc.mode, port: lc.port, err: err.message }, "listener error");
    return Object.assign(await bindHeld(lc.address, lc.port, { noDelay: true, pauseOnConnect: handOver, onError }), { lc });
  } catch (err) {
    throw listenError(err, { key: `listeners[${index}].port`, what: `listener listeners[${index}] (${lc.mode})`, address: lc.address, port: lc.port }, source);
  }
}

function identityOf(config: Config, source: ConfigSource): Identity | undefined {
  const user = config.process.user;
  if (user === undefined) return undefined;
  if (process.getuid?.() !== 0) {
    throw new StartupError(
      `process.user is set to ${user}, but postern was not started as root, so it cannot become that user`,
      "process.user",
      `start postern as root (it binds the ports, then runs as ${user}), or remove process.user and start it as ${user} itself (with CAP_NET_BIND_SERVICE for ports below 1024)`,
      source,
    );
  }
  try {
    return lookupIdentity(user, config.process.group);
  } catch (err) {
    if (!(err instanceof UnknownIdentityError)) throw err;
    const group = err.message.startsWith("no such group");
    throw new StartupError(
      `${err.message} (looked up with getent)`,
      group ? "process.group" : "process.user",
      group
        ? `create the group (groupadd --system ${config.process.group}) or correct process.group`
        : `create the user (useradd --system --no-create-home --shell /usr/sbin/nologin ${user}) or correct process.user`,
      source,
    );
  }
}

async function startLocked(
  config: Config,
  log: Logger,
  source: ConfigSource,
  /** Absent in a worker: the primary holds it. */
  lock: DataDirLock | undefined,
  undo: (() => unknown)[],
  spoolFault?: SpoolFault,
  hourly?: HourlyCounters,
  role?: ProcessRole,
): Promise<RunningServer> {
  const worker = role?.kind === "worker" ? role : undefined;
  const primary = role?.kind === "primary";
  // A worker runs as whoever the primary became; it binds nothing and reads no root-only file.
  const identity = worker ? undefined : identityOf(config, source);
  // A configured certificate is read now, as root if started so (the key may be readable by root
  // alone), and checked so that a wrong file fails the start in words. A generated one is made
  // later, by process.user, in its data directory.
  let tlsMaterial: TlsMaterial | undefined = worker?.tlsMaterial;
  if (!worker && config.tls.cert && config.tls.key) {
    checkTlsPair({ cert: config.tls.cert, key: config.tls.key }, source);
    tlsMaterial = loadTlsMaterial({ cert: config.tls.cert, key: config.tls.key }, config.tls.minVersion);
  }

  const bound: BoundListener[] = [];
  undo.push(() => {
    for (const b of bound) {
      b.server.close();
      for (const s of b.held) s.destroy();
    }
  });
  for (const [index, lc] of config.listeners.entries()) {
    // A worker's listeners are never bound: the primary hands it each accepted connection.
    bound.push(worker ? { lc, server: createTcpServer(), held: [] } : await bindListener(lc, index, source, log, primary));
  }
  // The web listener too (web.port, 443 say), by the primary alone; it serves once the apps are
  // built, after the drop, with the certificate (web-wiring.ts).
  let webBound: HeldListener | undefined;
  if (!worker && config.web.port !== undefined) {
    try {
      webBound = await bindHeld(config.web.address, config.web.port, {
        onError: (err) => log.warn({ event: "listener-error", mode: "web", err: err.message }, "web listener error"),
      });
    } catch (err) {
      throw listenError(err, { key: "web.port", what: "the web listener (web)", address: config.web.address, port: config.web.port }, source);
    }
    const b = webBound;
    undo.push(() => closeHeld(b));
  }

  // `postern sendmail` talks to this; off unless localSubmit.socket is set. Bound as root (its
  // folder, e.g. /run/postern, may be root's) and last: root is dropped in the same turn of the
  // event loop, so no connection to it is handled before. Its messages wait for the spool.
  let coreReady!: (c: { spool: QueueStoreHandle; queue: QueueRunner }) => void;
  const core = new Promise<{ spool: QueueStoreHandle; queue: QueueRunner }>((resolve) => (coreReady = resolve));
  let localSubmit: Awaited<ReturnType<typeof startLocalSubmitFromConfig>>;
  // DKIM signing of mail from logins and the local injector (src/dkim); listed last, so on top.
  const dkimSteps = createDkimSigner(config);
  try {
    // The primary serves it (a worker has no root to bind it with, and one socket is enough).
    localSubmit = worker
      ? null
      : await startLocalSubmitFromConfig(
          config,
          {
            openSpool: async () => (await core).spool.openWriter(),
            queued: (id) => void core.then((c) => c.queue.enqueued(id)),
            contentSteps: () => dkimSteps,
          },
          log,
        );
  } catch (err) {
    throw listenError(err, { key: "localSubmit.socket", what: "the sendmail socket", address: "", port: 0, path: config.localSubmit.socket }, source);
  }
  undo.push(() => localSubmit?.close());

  if (identity) {
    const chown = dropPrivileges(identity, [config.dataDir]);
    log.info({ event: "privileges-dropped", user: identity.user, uid: identity.uid, gid: identity.gid, chowned: chown.changed }, `running as ${identity.user}`);
    if (chown.skipped.some((s) => s.reason !== "socket")) {
      log.warn(
        { event: "chown-skipped", skipped: chown.skipped.slice(0, 20), count: chown.skipped.length },
        `left ${chown.skipped.length} entries of ${config.dataDir} alone (links, special files)`,
      );
    }
  }

  // ---- From here on, as process.user when one is set. ----
  // Whatever fails below is reported with the setting it comes from.
  const step = async <T>(key: string, what: string, fix: string, run: () => T | Promise<T>): Promise<T> => {
    try {
      return await run();
    } catch (err) {
      if (err instanceof StartupError) throw err;
      throw new StartupError(`${what}: ${err instanceof Error ? err.message : String(err)}`, key, fix, source);
    }
  };
  const asUser = identity ? ` (as ${identity.user}, process.user)` : "";
  const dataFix = `dataDir must be a directory that postern${asUser} can read and write`;
  // store.backend postgres: one pool for this node's users, counters and queue (src/store/pg).
  const pgPool = config.store.backend === "postgres" ? openPgPool(config.store, log) : undefined;
  if (pgPool) undo.push(() => pgPool.end());
  const userStoreOptions = { hostname: config.hostname, cacheTtlSec: config.auth.cacheTtlSec, requireAppPasswords: config.auth.requireAppPasswords };
  const store: UserStore = pgPool
    ? await step("store.url", "cannot use the PostgreSQL store", "check store.url, and run `postern store migrate`", async () => {
        await requireCurrentSchema(pgPool);
        return new PgUserStore({ pool: pgPool, ...userStoreOptions });
      })
    : await step(
        "dataDir",
        `cannot open the user store ${join(config.dataDir, "users.sqlite")}${asUser}`,
        dataFix,
        () => new SqliteUserStore({ path: join(config.dataDir, "users.sqlite"), ...userStoreOptions }),
      );
  undo.push(() => store.close());
  // Credential backends, AUTH throttle and send limits (auth-wiring.ts).
  const auth = await step("auth", "cannot set up the authentication backend", "check the auth section (backend, path, socket)", () =>
    createAuthWiring(config, store, log, pgPool),
  );
  undo.push(() => auth.close());
  if (!tlsMaterial) {
    const certs = await step("tls.cert, tls.key", "no certificate", "set tls.cert and tls.key, or install openssl so a self-signed pair can be generated", () =>
      ensureCertificate(config.tls, config.dataDir, config.hostname),
    );
    if (certs.generated) log.info({ event: "tls-cert-generated", cert: certs.cert }, "generated a self-signed certificate");
    tlsMaterial = loadTlsMaterial(certs, config.tls.minVersion);
  }
  // `let`: a SIGHUP reload swaps it; every new handshake reads the current one. One context per
  // TLS profile (tls.ts: ciphers, versions, no renegotiation); each listener takes its own.
  let tlsContexts = secureContextOf(tlsMaterial);

  // The file spool, or the queue in the PostgreSQL the nodes share (queue-store-wiring.ts).
  const spool = openQueueStore(config, log, spoolFault, pgPool);
  // A worker only writes new messages: recovery (and the in-use marker) is the primary's, done
  // before any worker started, since recovery removes what a running receiver is still writing;
  // so workers left by a server that was killed must be gone first (they exit when it dies).
  if (!worker) {
    const gone = await step("dataDir", "cannot check for workers of an earlier server", dataFix, () => waitForOldWorkers(config.dataDir, 10_000, primary));
    if (!gone) {
      throw new StartupError(
        `workers of an earlier postern still hold ${join(config.dataDir, "workers.lock")}`,
        "dataDir",
        "stop those processes (worker-main.js) first",
        source,
      );
    }
  }
  const recovered = worker ? undefined : await step(spool.startup.key, `${spool.startup.what}${asUser}`, spool.startup.fix ?? dataFix, () => spool.init());
  // Recovery is done: a start that fails from here on was no unclean stop (the marker goes).
  if (!worker) undo.push(() => spool.close());
  if (recovered?.uncleanStop) {
    log.warn(
      { event: "spool-recovered", queued: recovered.queued, removedIncomplete: recovered.removedIncomplete.length },
      "the last stop was unclean: spool checked",
    );
  }
  // Aliases, +detail and catch-alls count as existing recipients at RCPT (README "Routing").
  const routing = await step("aliases, transport", "cannot set up routing", "check aliases.file and the transport table", () =>
    createRouting(
      config,
      (d) => relay.isLocalDomain(d),
      (a) => auth.backends.lookupUser(a),
      log,
      pgPool && new PgAliases(pgPool),
    ),
  );
  undo.push(() => routing.close());
  const relay = new RelayPolicy({
    localDomains: config.domains,
    localAddressLiterals: config.localAddressLiterals,
    mynetworks: new NetworkList(config.mynetworks),
    localMailbox: (address) => routing.aliases.exists(address),
    // Refused at RCPT, not bounced after acceptance (docs/SECURITY.md 11.3).
    refusedDomain: (domain) => routing.delivererOptions.transport?.lookup(domain).kind === "reject",
  });
  // TLS-RPT (RFC 8460): the recorder the delivery path counts TLS sessions into; reports go out daily.
  // Delivery is the primary's alone: a worker keeps no TLS-RPT state.
  const tlsReports = worker
    ? null
    : await step("outbound.tlsRpt", "cannot open the TLS-RPT state", "outbound.tlsRpt.stateDir must be a directory postern can write", () =>
        createTlsReportWiring(config, log),
      );
  undo.push(() => tlsReports?.close());
  if (tlsReports) routing.useTlsRecorder(tlsReports.recorder);
  const deliver = createDeliverer({
    isLocalDomain: (d) => relay.isLocalDomain(d),
    maildirTemplate: config.delivery.maildir,
    smarthost: smarthostFromConfig(config.relay),
    heloName: config.hostname,
    fsync: config.queue.fsync,
    logger: log,
    ...routing.delivererOptions,
  });
  const dsn = new DsnNotifier({
    spool,
    hostname: config.hostname,
    isLocalAddress: (address) => relay.isLocalDomain(domainOf(address)),
    delayWarningSec: config.bounces.delayWarningSec,
    maxLifetimeSec: config.queue.maxLifetimeSec,
    enqueue: (id) => queue.enqueued(id),
    logger: log,
  });
  // Built in a worker too but never started there: the primary's runner alone delivers.
  const queue: QueueRunner = new QueueRunner({
    spool,
    deliver,
    onFinal: dsn.onFinal,
    onDeferred: dsn.onDeferred,
    retrySchedule: {
      firstRetrySec: config.queue.firstRetrySec,
      maxBackoffSec: config.queue.maxBackoffSec,
      maxLifetimeSec: config.queue.maxLifetimeSec,
    },
    concurrency: config.queue.concurrency,
    logger: log,
    ...spool.runnerOptions,
  });
  // `postern queue …` talks to this (src/cli/queue.ts), and the web admin (web-wiring.ts).
  const queueAdmin = new QueueAdmin(spool, queue, log);
  // Served by the process that owns the queue (the primary, when there are workers).
  const control = worker
    ? null
    : await step("dataDir", "cannot open the control socket for `postern queue`", dataFix, () => startControlServer(config.dataDir, queueAdmin, log));
  undo.push(() => control?.close());

  // SPF/DKIM/DMARC of mail from unauthenticated clients (src/inbound, README "Inbound checks").
  const inbound = createInboundWiring(config, relay);
  // AUTH offer and guard, sender/recipient/From: checks, send limits: the rules are in src/policy.
  const policyPorts = createPolicyPorts({
    relay,
    auth: auth.backends,
    hostname: config.hostname,
    authzidAdmins: auth.authzidAdmins,
    throttle: auth.throttlePort,
    lockoutSec: auth.lockoutSec,
    sendLimits: auth.sendLimitsPort,
    recipientDelimiter: config.aliases.recipientDelimiter,
    spfAtMail: inbound.spfAtMail,
  });
  const makePorts = (connLog: Logger, remoteIp: string, channelBinding: () => Buffer | null): SessionPorts => ({
    ...policyPorts({ remoteIp, log: connLog, channelBinding }),
    openSpool: () => spool.openWriter(),
    // Content steps before the commit (src/smtp/content-steps.ts); DKIM signing will be the first.
    contentSteps: () => [inbound.step(connLog), ...dkimSteps],
    queued: worker ? (id) => worker.queued(id) : (id) => queue.enqueued(id),
    delay: (ms) => new Promise((resolve) => setTimeout(resolve, ms).unref()),
    log: connLog,
    now: () => new Date(),
  });

  const servers = bound.map((b) => b.server);
  const sockets = new Set<Socket>();
  const clientLimits = createClientLimits(config, log);
  undo.push(() => clientLimits.stop());
  // Several processes: each keeps every counter, and tells the others of its own changes (shared-limits.ts).
  // The primary's own changes (web login failures) go to every worker through the pool.
  let pool: WorkerPool | undefined;
  const sharedLimits =
    worker || primary
      ? shareLimits(
          { throttle: auth.throttle, sendLimits: auth.sendLimits, clientLimits: clientLimits.limits },
          worker ? worker.publish : (event) => pool?.share(event),
        )
      : undefined;
  const listeners: RunningServer["listeners"] = [];
  const registries: { mode: string; connections: Set<SmtpConnection> }[] = [];

  if (!worker) {
    await queue.start();
    undo.push(() => queue.stop());
  }
  tlsReports?.start({ openWriter: () => spool.openWriter(), enqueue: (id) => queue.enqueued(id) });
  coreReady({ spool, queue });

  // The primary of several processes: workers start now (the spool is recovered, root is dropped)
  // and serve every SMTP connection; held connections wait until the first is ready.
  if (primary) {
    pool = await startWorkerPool({
      config,
      log,
      tlsMaterial: tlsMaterial,
      spoolFault,
      queued: (id) => queue.enqueued(id),
      shared: sharedLimits!,
      workerGone: () => void queue.rescan(),
      ...(hourly ? { hourly } : {}),
    });
    undo.push(() => pool?.close());
  }

  for (const [index, b] of bound.entries()) {
    const lc = b.lc;
    const registry = new Set<SmtpConnection>();
    registries.push({ mode: lc.mode, connections: registry });
    // accept.ts does the PROXY header, the connection limits and implicit TLS; then this starts SMTP.
    const serve = (socket: Socket, client: ClientInfo, release: () => void) => {
      const tls = client.tls !== undefined;
      const connLog = log.child({ conn: newSessionId(), client: client.ip, listener: lc.mode });
      const facts = { remoteIp: client.ip, tls: client.tls };
      connLog.info({ event: "connect", port: client.port, proxy: client.proxiedBy, tls: facts.tls?.version, cipher: facts.tls?.cipher }, "connect");
      // Settings per session, not per listener: a SIGHUP reload of `limits` reaches new sessions.
      // SCRAM -PLUS binds to the connection's TLS (implicit, or after STARTTLS): asked when needed.
      let connection: SmtpConnection | undefined;
      const ports = makePorts(connLog, client.ip, () => connection?.channelBinding() ?? null);
      const session = new Session({ ...sessionSettings(config, lc), tlsAvailable: !tls }, ports, facts);
      connection = new SmtpConnection(socket, session, {
        hostname: config.hostname,
        secureContext: tlsContexts.forListener(lc),
        idleTimeoutMs: config.limits.idleTimeoutMs,
        dataTimeoutMs: config.limits.dataTimeoutMs,
        tlsHandshakeTimeoutMs: config.limits.tlsHandshakeTimeoutMs,
        // Submission clients are known users' MUAs: no pause there (early bytes are still refused).
        greetPauseMs: lc.mode === "mta" ? config.limits.greetPauseMs : 0,
        guard: connectionGuard(config, lc, client.exempt, clientLimits.limits, connLog),
        log: connLog,
        registry,
        onClose: release,
      });
      connection.start();
    };
    const acceptOptions: AcceptOptions = {
      listener: lc,
      limits: clientLimits.limits,
      trustedProxies: new NetworkList(lc.trustedProxies ?? config.trustedProxies),
      get proxyHeaderTimeoutMs() {
        return config.limits.proxyHeaderTimeoutMs;
      },
      get tlsHandshakeTimeoutMs() {
        return config.limits.tlsHandshakeTimeoutMs;
      },
      get secureContext() {
        return tlsContexts.forListener(lc);
      },
      log,
      sockets,
      serve,
    };
    // Serving starts now; the connections that arrived while starting are taken first. The
    // primary of several processes only hands each connection, unread, to the next worker.
    const handOver = pool;
    serveHeld(b, handOver ? (s) => handOver.dispatch(index, s) : (s) => void acceptConnection(s, acceptOptions));
    if (worker) continue;
    const addr = b.server.address() as AddressInfo;
    listeners.push({ mode: lc.mode, address: addr.address, port: addr.port });
    log.info({ event: "listening", mode: lc.mode, address: addr.address, port: addr.port }, `listening (${lc.mode})`);
  }

  // The HTTPS web face (web-wiring.ts): autoconfig and the UI; off unless web.port is set. Its
  // port was bound before the privilege drop (above); it serves from now on.
  const material = tlsMaterial;
  let web: Awaited<ReturnType<typeof startWebFromConfig>> | undefined;
  try {
    // The primary's alone (one port, and it reads the queue).
    web = !webBound
      ? undefined
      : await startWebFromConfig({
          bound: webBound,
          config,
          log,
          listeners,
          store,
          auth,
          queueAdmin,
          sessionsOpen: () => {
            // With workers, theirs (this process serves none).
            const counts: Record<string, number> = pool ? pool.sessionCounts() : {};
            for (const r of registries) counts[r.mode] = (counts[r.mode] ?? 0) + r.connections.size;
            return counts;
          },
          ...(hourly ? { hourly } : {}),
          tls: material,
          secureContext: () => tlsContexts.forListener({ mode: "submissions" }),
        });
  } catch (err) {
    throw listenError(err, { key: "web.port", what: "the web listener (web)", address: config.web.address, port: config.web.port ?? 0 }, source);
  }
  undo.push(() => web?.close());

  const ops = operations({ config, log, servers, sockets, registries, source, tlsMaterial, setSecureContext: (ctx) => (tlsContexts = ctx) });
  return {
    listeners,
    store,
    queue,
    limits: () => clientLimits.limits.snapshot(),
    // With workers, a reload and a drain reach every one of them too.
    ops: pool ? pool.operations(ops) : ops,
    ...(pool ? { workers: pool } : {}),
    ...(sharedLimits ? { sharedLimits } : {}),
    ...(worker
      ? {
          serveHandedOver(index: number, socket: Socket) {
            const b = bound[index];
            if (!b) return void socket.destroy();
            socket.setNoDelay(true);
            if (b.accept) b.accept(socket);
            else b.held.push(socket);
          },
        }
      : {}),
    async close() {
      // Stop accepting, end the open connections (which releases their limiter slots), then wait.
      const closed = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
      // The workers end their sessions and exit before the queue and the spool close.
      await pool?.close();
      const gone = [...sockets].map(connectionEnded);
      for (const s of sockets) s.destroy();
      await Promise.all([...closed, ...gone]);
      clientLimits.stop();
      await web?.close();
      await control?.close();
      await localSubmit?.close();
      await tlsReports?.close();
      await queue.stop();
      if (!worker) await spool.close();
      await routing.close();
      auth.close();
      store.close();
      await pgPool?.end();
      lock?.release();
    },
  };
}

export function sessionSettings(config: Config, lc: ListenerConfig): SessionSettings {
  return {
    hostname: config.hostname,
    banner: config.smtp.banner,
    mode: lc.mode,
    tlsAvailable: lc.mode !== "submissions",
    // AUTH is the point of the submission ports; on port 25 it is on unless turned off per listener.
    authEnabled: lc.mode !== "mta" || lc.auth !== false,
    authWithoutTls: lc.authWithoutTls,
    requireTls: config.smtp.requireTls,
    limits: { ...config.limits, authFailureDelayMs: config.auth.failureDelayMs ?? config.limits.authFailureDelayMs },
    bareLineEnds: config.smtp.bareLineEnds,
    postmaster: `postmaster@${config.domains[0]!.toLowerCase()}`,
  };
}
