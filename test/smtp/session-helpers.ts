/**
 * A Session wired to real policy objects and real SASL mechanisms, with in-memory ports. The policy
 * ports come from the server's own factory (src/policy/session-ports.ts) over test stores: a small
 * credential store (SCRAM and CRAM secrets derived for real); then a spool writer that records what it
 * was given, a delay that resolves at once but remembers what was asked, and a fixed clock.
 * No sockets: the tests drive the state machine line by line, as the connection layer would.
 */
import assert from "node:assert/strict";
import { Session, type ConnectionFacts, type SessionOutput, type SessionPorts, type SessionSettings } from "../../src/smtp/session.js";
import type { ListenerMode } from "../../src/base/listener-mode.js";
import type { Reply } from "../../src/smtp/reply.js";
import { RelayPolicy } from "../../src/policy/relay.js";
import { NetworkList } from "../../src/policy/networks.js";
import { createPolicyPorts } from "../../src/policy/session-ports.js";
import { AuthThrottle, DEFAULT_AUTH_THROTTLE, type AuthThrottleConfig } from "../../src/policy/auth-throttle.js";
import { SendLimits, type SendLimitsConfig } from "../../src/policy/send-limits.js";
import { AuthBackends } from "../../src/auth/backends.js";
import type { Authenticator } from "../../src/auth/types.js";
import { createClientMechanism } from "../../src/sasl/index.js";
import type { SaslServerMechanism } from "../../src/sasl/types.js";
import { MemoryVerifier } from "../helpers/memory-verifier.js";
import type { NewEnvelope, SpoolWriter } from "../../src/queue/types.js";

export const HOST = "mx.example.org";
export const CLIENT_IP = "198.51.100.7";
/** Inside mynetworks (192.0.2.0/24). */
export const TRUSTED_IP = "192.0.2.10";
export const HELO_NAME = "client.example.net";
export const NOW = new Date("2026-03-04T05:06:07Z");
export const TLS = { version: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384" };
export const MECHANISMS = ["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"];

export interface TestUser {
  password: string;
  address: string;
  senders: string[];
}

export const USERS: Record<string, TestUser> = {
  "alice@example.org": {
    password: "alice-secret",
    address: "alice@example.org",
    senders: ["alice.smith@example.org", "@alice.example"],
  },
  "bob@example.org": { password: "bob-secret", address: "bob@example.org", senders: [] },
};

export const DEFAULT_LIMITS: SessionSettings["limits"] = {
  commandLineLength: 512,
  authLineLength: 12288,
  textLineLength: 1000,
  recipients: 100,
  messageSize: 10 * 1024 * 1024,
  errors: 20,
  junkCommands: 100,
  authFailures: 3,
  authFailureDelayMs: 2000,
  headerBytes: 4096,
  maxReceivedHeaders: 10,
};

export interface SpoolFaults {
  open?: boolean;
  write?: boolean;
  commit?: boolean;
}

/** Records the bytes it is given and whether the message was committed or aborted. */
export class MemorySpoolWriter implements SpoolWriter {
  readonly chunks: Buffer[] = [];
  envelope: NewEnvelope | undefined;
  commits = 0;
  aborts = 0;
  /** Calls made after commit or abort (should never happen). */
  lateCalls = 0;
  private ended = false;

  constructor(
    readonly id: string,
    private readonly faults: SpoolFaults,
    private readonly events: string[],
  ) {}

  get bytesWritten(): number {
    return this.chunks.reduce((n, c) => n + c.length, 0);
  }
  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
  get text(): string {
    return this.bytes.toString("utf8");
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.ended) this.lateCalls++;
    this.events.push(`write ${this.id}`);
    if (this.faults.write) throw new Error("disk full");
    this.chunks.push(Buffer.from(chunk));
  }
  async commit(envelope: NewEnvelope): Promise<string> {
    if (this.ended) this.lateCalls++;
    this.commits++;
    this.events.push(`commit ${this.id}`);
    if (this.faults.commit) throw new Error("fsync failed");
    this.ended = true;
    this.envelope = envelope;
    return this.id;
  }
  async abort(): Promise<void> {
    this.aborts++;
    this.ended = true;
    this.events.push(`abort ${this.id}`);
  }
}

export interface HarnessOptions {
  mode?: ListenerMode;
  /** The connection is encrypted from the start (implicit TLS). Default: true for submissions. */
  tls?: boolean;
  tlsAvailable?: boolean;
  authEnabled?: boolean;
  authWithoutTls?: boolean;
  limits?: Partial<SessionSettings["limits"]>;
  remoteIp?: string;
  bareLineEnds?: "reject" | "normalize";
  spool?: SpoolFaults;
  /** Replaces the offered list (what the backends derive by default: MECHANISMS). */
  mechanisms?: string[];
  /** Logins that may act as any authzid (smtp.authzidAdmins). */
  authzidAdmins?: string[];
  /** Turns on the cross-connection AUTH throttle (off by default: the tests count plain delays). */
  authThrottle?: Partial<AuthThrottleConfig>;
  /** Turns on per-user sending limits. */
  sendLimits?: SendLimitsConfig;
  /** Replaces the policy's From:/Sender: check (the header property test records what it is asked). */
  fromHeaderCheck?: SessionPorts["checkFromHeader"];
  /** Content steps before the commit (content-steps.test.ts). */
  contentSteps?: ReturnType<NonNullable<SessionPorts["contentSteps"]>>;
  /** A real queue store instead of the recording writers (then `spools` stays empty). */
  openSpool?: SessionPorts["openSpool"];
}

export interface LogEntry {
  level: "info" | "warn";
  fields: Record<string, unknown>;
  msg: string;
}

/** "250 2.1.0"; "250" when the reply has no enhanced code. */
export function code(r: Reply): string {
  return r.enhanced ? `${r.code} ${r.enhanced}` : String(r.code);
}

export function codes(out: SessionOutput): string[] {
  return out.replies.map(code);
}

export function b64(text: string | Buffer): string {
  return (typeof text === "string" ? Buffer.from(text, "utf8") : text).toString("base64");
}

export function plain(user: string, password: string, authzid = ""): string {
  return b64(`${authzid}\0${user}\0${password}`);
}

/**
 * RFC 2034 / RFC 3463: a reply either has no enhanced code (greeting, EHLO/HELO, 334, 354) or one
 * of the same class as its basic code, shaped class.subject.detail.
 */
export function assertWellFormed(r: Reply): void {
  if (r.enhanced === undefined) {
    assert.ok([220, 250, 334, 354].includes(r.code), `reply ${r.code} ${r.lines[0]} lacks an enhanced status code`);
    return;
  }
  assert.match(r.enhanced, /^[245]\.\d{1,3}\.\d{1,3}$/, `malformed enhanced code in ${r.code} ${r.enhanced}`);
  assert.equal(r.enhanced[0], String(r.code)[0], `enhanced code class differs from the basic code: ${r.code} ${r.enhanced}`);
  for (const line of r.lines) assert.doesNotMatch(line, /[\r\n]/, "reply text holds a line break");
}

/** The test users as a credential backend with a directory (the `sqlite` backend's place). */
export function memoryDirectory(verifier: MemoryVerifier, users: Record<string, TestUser>): Authenticator {
  return {
    verifyPassword: (user, password) => verifier.verifyPassword(user, password),
    scramSha256: (user) => verifier.scramSha256(user),
    cramMd5: (user) => verifier.cramMd5(user),
    digestMd5: (user, realm) => verifier.digestMd5(user, realm),
    credentials: () => verifier.credentials(),
    lookupUser: async (address) => {
      const u = users[address];
      return u ? { address: u.address, senders: u.senders, disabled: false } : null;
    },
    close: () => undefined,
  };
}

export class Harness {
  readonly session: Session;
  readonly spools: MemorySpoolWriter[] = [];
  readonly delays: number[] = [];
  readonly logs: LogEntry[] = [];
  readonly queued: { id: string; envelope: NewEnvelope }[] = [];
  readonly mechanismsCreated: SaslServerMechanism[] = [];
  /** Order of spool and queue events ("write Q1", "commit Q1", "queued Q1", "abort Q1"). */
  readonly events: string[] = [];
  readonly verifier = new MemoryVerifier(USERS);
  readonly settings: SessionSettings;

  constructor(readonly opts: HarnessOptions = {}) {
    const mode = opts.mode ?? "mta";
    const implicitTls = opts.tls ?? mode === "submissions";
    this.settings = {
      hostname: HOST,
      banner: "ESMTP Postern",
      mode,
      tlsAvailable: opts.tlsAvailable ?? !implicitTls,
      authEnabled: opts.authEnabled ?? true,
      authWithoutTls: opts.authWithoutTls ?? false,
      limits: { ...DEFAULT_LIMITS, ...opts.limits },
      bareLineEnds: opts.bareLineEnds ?? "reject",
      postmaster: "postmaster@example.org",
    };
    const relay = new RelayPolicy({
      localDomains: ["example.org"],
      localAddressLiterals: [],
      mynetworks: new NetworkList(["192.0.2.0/24", "2001:db8::/32"]),
      localMailbox: async (address) => Object.values(USERS).find((u) => u.address.toLowerCase() === address.toLowerCase())?.address ?? null,
    });
    // The server's own factory (src/policy/session-ports.ts) over test stores.
    const policyPorts = createPolicyPorts({
      relay,
      auth: new AuthBackends({
        defaultBackend: { backend: "sqlite", service: "smtp", timeoutMs: 5000 },
        domains: {},
        sqlite: memoryDirectory(this.verifier, USERS),
        localDomains: ["example.org"],
        digestMd5: false,
      }),
      hostname: HOST,
      authzidAdmins: opts.authzidAdmins ?? [],
      ...(opts.authThrottle ? { throttle: new AuthThrottle({ ...DEFAULT_AUTH_THROTTLE, ...opts.authThrottle }, [], () => NOW.getTime()) } : {}),
      lockoutSec: opts.authThrottle?.lockoutSec ?? DEFAULT_AUTH_THROTTLE.lockoutSec,
      ...(opts.sendLimits ? { sendLimits: new SendLimits(opts.sendLimits, () => NOW.getTime()) } : {}),
    });
    const log: SessionPorts["log"] = {
      info: (fields, msg) => void this.logs.push({ level: "info", fields, msg }),
      warn: (fields, msg) => void this.logs.push({ level: "warn", fields, msg }),
    };
    const policy = policyPorts({ remoteIp: opts.remoteIp ?? CLIENT_IP, log });
    const ports: SessionPorts = {
      ...policy,
      ...(opts.mechanisms ? { mechanisms: () => opts.mechanisms! } : {}),
      createMechanism: (name) => {
        const m = policy.createMechanism(name);
        if (m) this.mechanismsCreated.push(m);
        return m;
      },
      ...(opts.fromHeaderCheck ? { checkFromHeader: opts.fromHeaderCheck } : {}),
      ...(opts.contentSteps ? { contentSteps: () => opts.contentSteps! } : {}),
      openSpool: async () => {
        if (opts.openSpool) return opts.openSpool();
        if (opts.spool?.open) throw new Error("spool directory missing");
        const w = new MemorySpoolWriter(`Q${this.spools.length + 1}`, opts.spool ?? {}, this.events);
        this.spools.push(w);
        return w;
      },
      queued: (id, envelope) => {
        this.events.push(`queued ${id}`);
        this.queued.push({ id, envelope });
      },
      delay: async (ms) => {
        this.delays.push(ms);
      },
      log,
      now: () => new Date(NOW),
    };
    const facts: ConnectionFacts = { remoteIp: opts.remoteIp ?? CLIENT_IP, tls: implicitTls ? TLS : undefined };
    this.session = new Session(this.settings, ports, facts);
  }

  /** One command line (without CRLF); every reply is checked for a well-formed enhanced code. */
  async send(line: string | Buffer): Promise<SessionOutput> {
    const out = await this.session.handleLine(typeof line === "string" ? Buffer.from(line, "utf8") : line);
    out.replies.forEach(assertWellFormed);
    return out;
  }

  /** Sends a line and returns its reply codes ("250 2.1.0", ...), with "+close"/"+starttls" for an action. */
  async cmd(line: string | Buffer): Promise<string> {
    const out = await this.send(line);
    return [...codes(out), ...(out.action ? [`+${out.action}`] : [])].join(" | ");
  }

  /** Sends each line, insisting on the expected reply codes. */
  async expect(...pairs: [string, string][]): Promise<void> {
    for (const [line, expected] of pairs) assert.equal(await this.cmd(line), expected, `reply to ${JSON.stringify(line)}`);
  }

  async ehlo(name = HELO_NAME): Promise<string[]> {
    const out = await this.send(`EHLO ${name}`);
    assert.deepEqual(codes(out), ["250"]);
    return out.replies[0]!.lines.slice(1);
  }

  /** STARTTLS, then the handshake "completes". */
  async startTls(): Promise<void> {
    assert.equal(await this.cmd("STARTTLS"), "220 2.0.0 | +starttls");
    this.session.tlsStarted(TLS);
  }

  async login(user = "alice@example.org", password = USERS[user]?.password ?? "x"): Promise<void> {
    assert.equal(await this.cmd(`AUTH PLAIN ${plain(user, password)}`), "235 2.7.0");
    assert.equal(this.session.authenticatedUser, user);
  }

  /** Runs a whole SASL exchange with our own client mechanism; returns the final reply codes. */
  async saslExchange(mechanism: string, username: string, password: string, withInitial = true): Promise<string> {
    const client = createClientMechanism(mechanism, { username, password })!;
    const initial = withInitial ? client.initial() : null;
    let out = await this.send(initial ? `AUTH ${mechanism} ${initial.length === 0 ? "=" : b64(initial)}` : `AUTH ${mechanism}`);
    for (let rounds = 0; out.replies.length === 1 && out.replies[0]!.code === 334; rounds++) {
      assert.ok(rounds < 5, "too many SASL rounds");
      const challenge = Buffer.from(out.replies[0]!.lines[0]!, "base64");
      let answer: Buffer;
      try {
        answer = client.respond(challenge);
      } catch {
        out = await this.send("*");
        break;
      }
      out = await this.send(b64(answer));
    }
    return [...codes(out), ...(out.action ? [`+${out.action}`] : [])].join(" | ");
  }

  /** EHLO (and STARTTLS/AUTH where the listener needs them), MAIL, RCPTs, DATA → 354. */
  async toData(opts: { from?: string; to?: string[]; mailParams?: string } = {}): Promise<MemorySpoolWriter> {
    const from = opts.from ?? "alice@example.org";
    await this.send(`MAIL FROM:<${from}>${opts.mailParams ? ` ${opts.mailParams}` : ""}`).then((o) => assert.deepEqual(codes(o), ["250 2.1.0"], "MAIL"));
    for (const to of opts.to ?? ["bob@example.org"]) {
      assert.deepEqual(codes(await this.send(`RCPT TO:<${to}>`)), ["250 2.1.5"], `RCPT ${to}`);
    }
    assert.deepEqual(codes(await this.send("DATA")), ["354"]);
    assert.equal(this.session.expecting, "data");
    return this.spools[this.spools.length - 1]!;
  }

  /**
   * Feeds DATA bytes in the given pieces until the session answers. Returns the output and every
   * byte left after the terminator (the unread part of the last piece plus the pieces not fed).
   */
  async feed(pieces: Buffer[]): Promise<{ output: SessionOutput; rest: Buffer; calls: number }> {
    for (let i = 0; i < pieces.length; i++) {
      const result = await this.session.receiveData(pieces[i]!);
      if (result !== null) {
        result.output.replies.forEach(assertWellFormed);
        const rest = Buffer.concat([result.rest ?? Buffer.alloc(0), ...pieces.slice(i + 1)]);
        return { output: result.output, rest, calls: i + 1 };
      }
    }
    assert.fail("the session never answered the DATA phase");
  }

  async data(message: string | Buffer): Promise<{ output: SessionOutput; rest: Buffer }> {
    return this.feed([typeof message === "string" ? Buffer.from(message, "utf8") : message]);
  }
}

/** A ready session: EHLO sent; for submission listeners also TLS and AUTH as alice. */
export async function ready(opts: HarnessOptions = {}, user?: string): Promise<Harness> {
  const h = new Harness(opts);
  await h.ehlo();
  const mode = opts.mode ?? "mta";
  if (mode !== "mta" || user) {
    if (!(opts.tls ?? mode === "submissions") && !opts.authWithoutTls) {
      await h.startTls();
      await h.ehlo();
    }
    await h.login(user);
  }
  return h;
}
