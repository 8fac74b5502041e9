/**
 * Wiring: config → user store, spool, queue runner, deliverer, policy, listeners.
 * Nothing below this folder knows about sockets, config files or the CLI.
 */
import { createServer as createTcpServer, type Server as NetServer, type Socket, type AddressInfo } from "node:net";
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import type { Config, ListenerConfig } from "../config/schema.js";
import { SqliteUserStore } from "../auth/sqlite-store.js";
import { createAuthWiring } from "./auth-wiring.js";
import { RelayPolicy } from "../policy/relay.js";
import { NetworkList } from "../policy/networks.js";
import { checkEnvelopeSender, checkFromHeader } from "../policy/sender.js";
import { ALLOW, deny } from "../policy/decision.js";
import { reply } from "../smtp/reply.js";
import { Spool } from "../queue/spool.js";
import { QueueRunner } from "../queue/scheduler.js";
import { DsnNotifier } from "../queue/bounce.js";
import { QueueAdmin } from "../queue/admin.js";
import { startControlServer } from "./control.js";
import { createDeliverer } from "../delivery/router.js";
import { createRouting } from "./routing-wiring.js";
import { Session, newSessionId, type SessionPorts, type SessionSettings } from "../smtp/session.js";
import { SmtpConnection } from "./connection.js";
import { acceptConnection, connectionEnded, type AcceptOptions, type ClientInfo } from "./accept.js";
import { connectionGuard, createClientLimits } from "./limits-wiring.js";
import type { LimitsSnapshot } from "../policy/client-limits.js";
import { ensureCertificate, loadTlsMaterial, secureContextOf } from "./tls.js";
import { operations, type Operations } from "./operate.js";
import { startLocalSubmitFromConfig } from "./local-submit.js";
import type { Logger } from "./log.js";

export interface RunningServer {
  listeners: { mode: ListenerConfig["mode"]; address: string; port: number }[];
  store: SqliteUserStore;
  queue: QueueRunner;
  /** Connection-limit counters (for metrics; also logged as `event: "limits"`). */
  limits(): LimitsSnapshot;
  /** Reload, drain and session counts (src/server/operate.ts): SIGHUP and SIGTERM in serve.ts. */
  ops: Operations;
  close(): Promise<void>;
}

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const store = new SqliteUserStore({ path: join(config.dataDir, "users.sqlite"), hostname: config.hostname, cacheTtlSec: config.auth.cacheTtlSec });
  // Credential backends, AUTH throttle and send limits (auth-wiring.ts).
  const auth = createAuthWiring(config, store, log);
  const certs = await ensureCertificate(config.tls, config.dataDir, config.hostname);
  if (certs.generated) log.info({ event: "tls-cert-generated", cert: certs.cert }, "generated a self-signed certificate");
  const tlsMaterial = loadTlsMaterial(certs, config.tls.minVersion);
  // `let`: a SIGHUP reload swaps it; every new handshake reads the current one.
  let secureContext = secureContextOf(tlsMaterial);

  const spool = new Spool(join(config.dataDir, "queue"), { fsync: config.queue.fsync, logger: log });
  const recovered = await spool.init();
  if (recovered.uncleanStop) {
    log.warn({ event: "spool-recovered", queued: recovered.queued, removedIncomplete: recovered.removedIncomplete.length }, "the last stop was unclean: spool checked");
  }
  // Aliases, +detail and catch-alls count as existing recipients at RCPT (README "Routing").
  const routing = createRouting(config, (d) => relay.isLocalDomain(d), (a) => auth.backends.lookupUser(a), log);
  const relay = new RelayPolicy({
    localDomains: config.domains,
    localAddressLiterals: config.localAddressLiterals,
    mynetworks: new NetworkList(config.mynetworks),
    localMailbox: (address) => routing.aliases.exists(address),
  });
  const deliver = createDeliverer({
    isLocalDomain: (d) => relay.isLocalDomain(d),
    maildirTemplate: config.delivery.maildir,
    smarthost: smarthostOf(config),
    heloName: config.hostname,
    fsync: config.queue.fsync,
    logger: log,
    ...routing.delivererOptions,
  });
  const dsn = new DsnNotifier({
    spool,
    hostname: config.hostname,
    isLocalAddress: (address) => relay.isLocalDomain(address.slice(address.lastIndexOf("@") + 1).toLowerCase().replace(/\.$/, "")),
    delayWarningSec: config.bounces.delayWarningSec,
    maxLifetimeSec: config.queue.maxLifetimeSec,
    enqueue: (id) => queue.enqueued(id),
    logger: log,
  });
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
  });
  await queue.start();
  // `postern queue …` talks to this (src/cli/queue.ts).
  const control = await startControlServer(config.dataDir, new QueueAdmin(spool, queue, log), log);
  // `postern sendmail` talks to this; off unless localSubmit.socket is set.
  const localSubmit = await startLocalSubmitFromConfig(config, { openSpool: () => spool.openWriter(), queued: (id) => queue.enqueued(id) }, log);

  const makePorts = (connLog: Logger, remoteIp: string): SessionPorts => ({
    // mechanisms, createMechanism, account, authGuard, sendLimits
    ...auth.sessionPorts(connLog, remoteIp),
    checkSender: async (ctx, sender, account) => {
      if (ctx.authUser === undefined) return ALLOW;
      // Fail closed: an authenticated login that has no account owns no address.
      if (!account) return deny(reply(553, "5.7.1", "Sender address rejected: login has no mailbox"), "login has no account");
      return checkEnvelopeSender(account, sender.address);
    },
    checkRecipient: (ctx, rcpt) => relay.checkRecipient(ctx, rcpt),
    checkFromHeader: (account, from) => checkFromHeader(account, from),
    openSpool: () => spool.openWriter(),
    queued: (id) => queue.enqueued(id),
    delay: (ms) => new Promise((resolve) => setTimeout(resolve, ms).unref()),
    log: connLog,
    now: () => new Date(),
  });

  const servers: NetServer[] = [];
  const sockets = new Set<Socket>();
  const clientLimits = createClientLimits(config, log);
  const listeners: RunningServer["listeners"] = [];
  const registries: { mode: string; connections: Set<SmtpConnection> }[] = [];
  for (const lc of config.listeners) {
    const settings = sessionSettings(config, lc);
    const registry = new Set<SmtpConnection>();
    registries.push({ mode: lc.mode, connections: registry });
    // accept.ts does the PROXY header, the connection limits and implicit TLS; then this starts SMTP.
    const serve = (socket: Socket, client: ClientInfo, release: () => void) => {
      const tls = client.tls !== undefined;
      const connLog = log.child({ conn: newSessionId(), client: client.ip, listener: lc.mode });
      const facts = { remoteIp: client.ip, tls: client.tls };
      connLog.info({ event: "connect", port: client.port, proxy: client.proxiedBy, tls: facts.tls?.version, cipher: facts.tls?.cipher }, "connect");
      const session = new Session({ ...settings, tlsAvailable: !tls }, makePorts(connLog, client.ip), facts);
      new SmtpConnection(socket, session, {
        hostname: config.hostname,
        secureContext,
        idleTimeoutMs: config.limits.idleTimeoutMs,
        dataTimeoutMs: config.limits.dataTimeoutMs,
        tlsHandshakeTimeoutMs: config.limits.tlsHandshakeTimeoutMs,
        // Submission clients are known users' MUAs: no pause there (early bytes are still refused).
        greetPauseMs: lc.mode === "mta" ? config.limits.greetPauseMs : 0,
        guard: connectionGuard(config, lc, client.exempt, clientLimits.limits, connLog),
        log: connLog,
        registry,
        onClose: release,
      }).start();
    };
    const acceptOptions: AcceptOptions = {
      listener: lc,
      limits: clientLimits.limits,
      trustedProxies: new NetworkList(lc.trustedProxies ?? config.trustedProxies),
      proxyHeaderTimeoutMs: config.limits.proxyHeaderTimeoutMs,
      tlsHandshakeTimeoutMs: config.limits.tlsHandshakeTimeoutMs,
      get secureContext() {
        return secureContext;
      },
      log,
      sockets,
      serve,
    };
    // Plain TCP on every port: on 465 the PROXY header comes before the TLS handshake (accept.ts).
    // noDelay: replies are written once per pipelined group (connection.ts), so Nagle's algorithm
    // would only hold a reply back until the client's delayed ACK (up to 40 ms on Linux).
    const server = createTcpServer({ noDelay: true }, (s) => void acceptConnection(s, acceptOptions));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(lc.port, lc.address, () => resolve());
    });
    const addr = server.address() as AddressInfo;
    listeners.push({ mode: lc.mode, address: addr.address, port: addr.port });
    log.info({ event: "listening", mode: lc.mode, address: addr.address, port: addr.port }, `listening (${lc.mode})`);
    servers.push(server);
  }

  return {
    listeners,
    store,
    queue,
    limits: () => clientLimits.limits.snapshot(),
    ops: operations({ config, log, servers, sockets, registries, setSecureContext: (ctx) => (secureContext = ctx) }),
    async close() {
      // Stop accepting, end the open connections (which releases their limiter slots), then wait.
      const closed = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
      const gone = [...sockets].map(connectionEnded);
      for (const s of sockets) s.destroy();
      await Promise.all([...closed, ...gone]);
      clientLimits.stop();
      await control.close();
      await localSubmit?.close();
      await queue.stop();
      await spool.close();
      await routing.close();
      auth.close();
      store.close();
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
    limits: { ...config.limits, authFailureDelayMs: config.auth.failureDelayMs ?? config.limits.authFailureDelayMs },
    bareLineEnds: config.smtp.bareLineEnds,
    postmaster: `postmaster@${config.domains[0]!.toLowerCase()}`,
  };
}

function smarthostOf(config: Config) {
  const s = config.relay.smarthost;
  if (s === undefined) return undefined;
  if (typeof s === "string") {
    const i = s.lastIndexOf(":");
    return { host: s.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(s.slice(i + 1)), tls: "starttls-opportunistic" as const, rejectUnauthorized: false };
  }
  return s;
}
