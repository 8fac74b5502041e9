/**
 * Wiring: config → user store, spool, queue runner, deliverer, policy, listeners.
 * Nothing below this folder knows about sockets, config files or the CLI.
 */
import { createServer as createTcpServer, type Server as NetServer, type Socket, type AddressInfo } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import type { Config, ListenerConfig } from "../config/schema.js";
import { SqliteUserStore } from "../auth/sqlite-store.js";
import { createServerMechanism, SERVER_MECHANISMS } from "../sasl/index.js";
import { RelayPolicy } from "../policy/relay.js";
import { NetworkList, unmapIPv4 } from "../policy/networks.js";
import { checkEnvelopeSender, checkFromHeader } from "../policy/sender.js";
import { ALLOW, deny } from "../policy/decision.js";
import { reply } from "../smtp/reply.js";
import { Spool } from "../queue/spool.js";
import { QueueRunner } from "../queue/scheduler.js";
import { createDeliverer } from "../delivery/router.js";
import { Session, newSessionId, type SessionPorts, type SessionSettings } from "../smtp/session.js";
import { SmtpConnection, tlsInfo } from "./connection.js";
import { ensureCertificate, loadTlsMaterial, secureContextOf } from "./tls.js";
import type { Logger } from "./log.js";

export interface RunningServer {
  listeners: { mode: ListenerConfig["mode"]; address: string; port: number }[];
  store: SqliteUserStore;
  queue: QueueRunner;
  close(): Promise<void>;
}

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const store = new SqliteUserStore({ path: join(config.dataDir, "users.sqlite"), hostname: config.hostname, cacheTtlSec: config.auth.cacheTtlSec });
  const certs = await ensureCertificate(config.tls, config.dataDir, config.hostname);
  if (certs.generated) log.info({ event: "tls-cert-generated", cert: certs.cert }, "generated a self-signed certificate");
  const tlsMaterial = loadTlsMaterial(certs, config.tls.minVersion);
  const secureContext = secureContextOf(tlsMaterial);

  const spool = new Spool(join(config.dataDir, "queue"), { fsync: config.queue.fsync });
  await spool.init();
  const relay = new RelayPolicy({
    localDomains: config.domains,
    localAddressLiterals: config.localAddressLiterals,
    mynetworks: new NetworkList(config.mynetworks),
    localMailbox: async (address) => (await store.lookupUser(address))?.address ?? null,
  });
  const deliver = createDeliverer({
    isLocalDomain: (d) => relay.isLocalDomain(d),
    maildirTemplate: config.delivery.maildir,
    smarthost: smarthostOf(config),
    heloName: config.hostname,
    fsync: config.queue.fsync,
    logger: log,
  });
  const queue = new QueueRunner({
    spool,
    deliver,
    retrySchedule: {
      firstRetrySec: config.queue.firstRetrySec,
      maxBackoffSec: config.queue.maxBackoffSec,
      maxLifetimeSec: config.queue.maxLifetimeSec,
    },
    concurrency: config.queue.concurrency,
    logger: log,
  });
  await queue.start();

  const fakeSaltKey = randomBytes(32);
  const offered = SERVER_MECHANISMS.filter(
    (m) => store.supportedMechanisms().includes(m) && (m !== "DIGEST-MD5" || config.smtp.digestMd5),
  );
  const authzidAdmins = new Set(config.smtp.authzidAdmins.map((a) => a.toLowerCase()));

  const makePorts = (connLog: Logger): SessionPorts => ({
    mechanisms: () => offered,
    createMechanism: (name) =>
      createServerMechanism(name, {
        verifier: store,
        hostname: config.hostname,
        authzidAllowed: (authcid, authzid) =>
          authcid.toLowerCase() === authzid.toLowerCase() || authzidAdmins.has(authcid.toLowerCase()),
        fakeSaltKey,
      }),
    account: (login) => store.lookupUser(login),
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
  const listeners: RunningServer["listeners"] = [];
  for (const lc of config.listeners) {
    const settings = sessionSettings(config, lc);
    const accept = (socket: Socket, tls: boolean) => {
      sockets.add(socket);
      const remoteIp = unmapIPv4(socket.remoteAddress ?? "unknown");
      const connLog = log.child({ conn: newSessionId(), client: remoteIp, listener: lc.mode });
      const facts = { remoteIp, tls: tls ? tlsInfo(socket as TLSSocket) : undefined };
      connLog.info({ event: "connect", port: socket.remotePort, tls: facts.tls?.version, cipher: facts.tls?.cipher }, "connect");
      const session = new Session({ ...settings, tlsAvailable: !tls }, makePorts(connLog), facts);
      new SmtpConnection(socket, session, {
        hostname: config.hostname,
        secureContext,
        idleTimeoutMs: config.limits.idleTimeoutMs,
        dataTimeoutMs: config.limits.dataTimeoutMs,
        tlsHandshakeTimeoutMs: 30_000,
        log: connLog,
        onClose: () => sockets.delete(socket),
      }).start();
    };
    const server =
      lc.mode === "submissions"
        ? createTlsServer({ ...tlsMaterial, handshakeTimeout: 30_000 }, (s) => accept(s, true))
        : createTcpServer((s) => accept(s, false));
    server.on("tlsClientError", (err: Error, s: Socket) => {
      log.info({ event: "tls-failed", client: unmapIPv4(s.remoteAddress ?? ""), err: err.message }, "TLS handshake failed");
    });
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
    async close() {
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      for (const s of sockets) s.destroy();
      await queue.stop();
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
    limits: config.limits,
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
