/**
 * The session's policy ports (src/policy/session-ports.ts), the factory the server and the unit
 * harness share: the fail-closed sender rule, the authzid rule and the AUTH throttle reaching the
 * mechanisms, and the relay decisions behind RCPT and senderVouched.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkSessionSender, createPolicyPorts, type AuthSource, type PolicySetup } from "../../src/policy/session-ports.js";
import { AuthThrottle, DEFAULT_AUTH_THROTTLE } from "../../src/policy/auth-throttle.js";
import { RelayPolicy } from "../../src/policy/relay.js";
import { NetworkList } from "../../src/policy/networks.js";
import { SendLimits } from "../../src/policy/send-limits.js";
import { AuthBackends } from "../../src/auth/backends.js";
import { parsePath } from "../../src/smtp/address.js";
import type { MailPath } from "../../src/smtp/address.js";
import type { PolicyContext } from "../../src/smtp/session-types.js";
import { MemoryVerifier } from "../helpers/memory-verifier.js";
import { Harness, memoryDirectory, plain, USERS } from "../smtp/session-helpers.js";
import type { InfoWarnLog } from "../../src/base/log.js";

const ALICE = "alice@example.org";
const path = (address: string): MailPath => {
  const parsed = parsePath(`<${address}>`, { allowNull: true, allowUtf8: false });
  assert.ok(parsed.ok);
  return parsed.path;
};
const authed: PolicyContext = { ip: "203.0.113.5", mode: "submission", authUser: ALICE };
const alice = { address: ALICE, senders: ["@alice.example"] };

test("MAIL FROM without AUTH is not a sender-ownership question (relay decides at RCPT)", async () => {
  assert.deepEqual(await checkSessionSender({ ip: "203.0.113.5", mode: "mta" }, path("anyone@example.net"), null), { allow: true });
});

test("an authenticated login without an account owns no address: 553 5.7.1 (fail closed)", async () => {
  const d = await checkSessionSender(authed, path(ALICE), null);
  assert.equal(d.allow, false);
  assert.ok(!d.allow);
  assert.equal(d.reply.code, 553);
  assert.equal(d.reply.enhanced, "5.7.1");
  assert.equal(d.reason, "login has no account");
});

test("an authenticated login may send as what its account owns, and only that", async () => {
  assert.equal((await checkSessionSender(authed, path(ALICE), alice)).allow, true);
  assert.equal((await checkSessionSender(authed, path("me@alice.example"), alice)).allow, true);
  assert.equal((await checkSessionSender(authed, path(""), alice)).allow, true, "the null sender: checked at From:");
  assert.equal((await checkSessionSender(authed, path("bob@example.org"), alice)).allow, false);
});

function relay(): RelayPolicy {
  return new RelayPolicy({
    localDomains: ["example.org"],
    localAddressLiterals: [],
    mynetworks: new NetworkList(["192.0.2.0/24"]),
    localMailbox: async (address) => (address.toLowerCase() === ALICE ? ALICE : null),
  });
}

function backends(): AuthBackends {
  const verifier = new MemoryVerifier(USERS);
  return new AuthBackends({
    defaultBackend: { backend: "sqlite", service: "smtp", timeoutMs: 1000 },
    domains: {},
    sqlite: memoryDirectory(verifier, USERS),
    localDomains: ["example.org"],
    digestMd5: false,
  });
}

function recorder(): InfoWarnLog & { warnings: Record<string, unknown>[] } {
  const warnings: Record<string, unknown>[] = [];
  return { warnings, info: () => undefined, warn: (fields) => void warnings.push(fields) };
}

const setup = (more: Partial<PolicySetup> = {}): PolicySetup => ({
  relay: relay(),
  auth: backends(),
  hostname: "mx.example.org",
  authzidAdmins: [],
  ...more,
});

const plainMessage = (authzid: string, user: string, password: string) => Buffer.from(`${authzid}\0${user}\0${password}`);

test("the authzid rule reaches the mechanisms: only an admin may act as another user", async () => {
  const ports = createPolicyPorts(setup({ authzidAdmins: [ALICE] }))({ remoteIp: "203.0.113.5", log: recorder() });
  const asAdmin = await ports.createMechanism("PLAIN")!.start(plainMessage("bob@example.org", ALICE, "alice-secret"));
  assert.deepEqual(asAdmin, { kind: "success", identity: { authcid: ALICE, authzid: "bob@example.org" } });
  const asBob = await ports.createMechanism("PLAIN")!.start(plainMessage(ALICE, "bob@example.org", "bob-secret"));
  assert.equal(asBob.kind, "failure");
  assert.equal(asBob.kind === "failure" && asBob.reason, "authzid-not-permitted");
});

test("with a throttle: an authGuard, the account lockout in front of the mechanisms, and a logged lockout", async () => {
  const throttle = new AuthThrottle({ ...DEFAULT_AUTH_THROTTLE, accountFailures: 1, ipFailures: 100 }, [], () => 5_000);
  const log = recorder();
  const ports = createPolicyPorts(setup({ throttle, lockoutSec: 900 }))({ remoteIp: "203.0.113.5", log });
  assert.ok(ports.authGuard);
  assert.equal(ports.authGuard.refusal(), null);
  const wrong = await ports.createMechanism("PLAIN")!.start(plainMessage("", ALICE, "wrong"));
  assert.equal(wrong.kind === "failure" && wrong.reason, "bad-password");
  ports.authGuard.failed();
  assert.deepEqual(log.warnings, [{ event: "auth-throttled", ip: "203.0.113.5", scope: "account", user: ALICE, lockoutSec: 900 }]);
  ports.authGuard.refusal();
  const locked = await ports.createMechanism("PLAIN")!.start(plainMessage("", ALICE, "alice-secret"));
  assert.equal(locked.kind === "failure" && locked.reason, "backend-error", "refused before the password is checked (454)");
});

test("without a throttle or send limits those ports are absent (the session then applies none)", () => {
  const ports = createPolicyPorts(setup())({ remoteIp: "203.0.113.5", log: recorder() });
  assert.equal(ports.authGuard, undefined);
  assert.equal(ports.sendLimits, undefined);
  const limits = new SendLimits({ messagesPerHour: 1, recipientsPerHour: 10 });
  assert.equal(createPolicyPorts(setup({ sendLimits: limits }))({ remoteIp: "203.0.113.5", log: recorder() }).sendLimits, limits);
});

test("offered mechanisms and accounts come from the backends; relay decides RCPT and senderVouched", async () => {
  const ports = createPolicyPorts(setup())({ remoteIp: "203.0.113.5", log: recorder() });
  assert.deepEqual(ports.mechanisms(), ["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"]);
  assert.equal(ports.createMechanism("DIGEST-MD5"), null, "not offered: not created");
  assert.deepEqual(await ports.account(ALICE), { address: ALICE, senders: USERS[ALICE]!.senders, disabled: false });
  assert.equal(await ports.account("nobody@example.org"), null);
  assert.equal(ports.senderVouched!({ ip: "192.0.2.9", mode: "mta" }), true, "mynetworks on port 25");
  assert.equal(ports.senderVouched!({ ip: "192.0.2.9", mode: "submission" }), false, "never on submission without AUTH");
  assert.equal(ports.senderVouched!(authed), true);
  assert.equal((await ports.checkRecipient({ ip: "203.0.113.5", mode: "mta" }, path("x@example.net"))).allow, false, "no open relay");
});

test("a login whose backend vouches but has no account is refused at MAIL through the ports (fail closed)", async () => {
  const b = backends();
  const auth: AuthSource = {
    verifier: b.verifier,
    mechanisms: () => b.mechanisms(),
    createMechanism: (...a) => b.createMechanism(...a),
    account: async () => null,
  };
  const ports = createPolicyPorts(setup({ auth }))({ remoteIp: "203.0.113.5", log: recorder() });
  const d = await ports.checkSender(authed, path(ALICE), await ports.account(ALICE));
  assert.equal(d.allow, false);
});

// The unit harness is built from the same factory: its sessions follow these rules.
test("harness: an authzid admin may submit as another user; others get 535", async () => {
  const h = new Harness({ mode: "submissions", authzidAdmins: [ALICE] });
  await h.ehlo();
  await h.expect([`AUTH PLAIN ${plain(ALICE, "alice-secret", "bob@example.org")}`, "235 2.7.0"]);
  const other = new Harness({ mode: "submissions", authzidAdmins: [ALICE] });
  await other.ehlo();
  await other.expect([`AUTH PLAIN ${plain("bob@example.org", "bob-secret", ALICE)}`, "535 5.7.8"]);
});

test("harness: with the throttle on, an account locked out by failures gets 454 4.7.0 even with the right password", async () => {
  const h = new Harness({ mode: "submissions", authThrottle: { accountFailures: 2, ipFailures: 100, penaltyBaseMs: 0 }, limits: { authFailures: 10 } });
  await h.ehlo();
  await h.expect([`AUTH PLAIN ${plain(ALICE, "wrong")}`, "535 5.7.8"], [`AUTH PLAIN ${plain(ALICE, "wrong")}`, "535 5.7.8"]);
  await h.expect([`AUTH PLAIN ${plain(ALICE, "alice-secret")}`, "454 4.7.0"]);
  assert.ok(h.logs.some((l) => l.fields.event === "auth-throttled" && l.fields.scope === "account"));
});

test("a pass-through mechanism (Dovecot) gets the client's address and the lockout hook; ours get the guarded verifier", () => {
  const b = backends();
  const seen: { context: { remoteIp?: string; login?(user: string): void }; verifier: unknown }[] = [];
  const auth: AuthSource = {
    verifier: b.verifier,
    mechanisms: () => ["PLAIN"],
    createMechanism: (name, context, sasl, verifier) => (seen.push({ context, verifier }), b.createMechanism(name, context, sasl, verifier)),
    account: (login) => b.account(login),
  };
  const throttle = new AuthThrottle({ ...DEFAULT_AUTH_THROTTLE, accountFailures: 1, ipFailures: 100 }, [], () => 5_000);
  const ports = createPolicyPorts(setup({ auth, throttle }))({ remoteIp: "203.0.113.5", log: recorder() });
  ports.createMechanism("PLAIN");
  assert.equal(seen[0]!.context.remoteIp, "203.0.113.5");
  assert.notEqual(seen[0]!.verifier, b.verifier, "wrapped by the guard");
  seen[0]!.context.login!(ALICE);
  ports.authGuard!.failed();
  assert.throws(() => seen[0]!.context.login!(ALICE), /account throttled/, "the hook refuses a locked-out account");
});

test("SCRAM-SHA-256-PLUS is offered and created only while the connection has tls-exporter data (TLS 1.3)", async () => {
  let binding: Buffer | null = null;
  const ports = createPolicyPorts(setup())({ remoteIp: "203.0.113.5", log: recorder(), channelBinding: () => binding });
  assert.deepEqual(ports.mechanisms(), ["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"], "no TLS, or TLS 1.2");
  assert.equal(ports.createMechanism("SCRAM-SHA-256-PLUS"), null);
  // Plain SCRAM with "y" is honest while -PLUS is not offered.
  const honest = await ports.createMechanism("SCRAM-SHA-256")!.start(Buffer.from("y,,n=alice@example.org,r=abcdef"));
  assert.equal(honest.kind, "challenge");
  binding = Buffer.alloc(32, 1);
  assert.deepEqual(ports.mechanisms(), ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"], "TLS 1.3");
  assert.equal(ports.createMechanism("scram-sha-256-plus")?.name, "SCRAM-SHA-256-PLUS");
  const downgraded = await ports.createMechanism("SCRAM-SHA-256")!.start(Buffer.from("y,,n=alice@example.org,r=abcdef"));
  assert.equal(downgraded.kind === "failure" && downgraded.reason, "channel-binding");
});
