/**
 * process.workers: 2 (src/server/workers.ts): the real server as a primary and two workers.
 * Connections are served by both workers (the `connect` log line names its worker), mail accepted
 * by either is delivered exactly once, the AUTH throttle counts failures from every worker as one,
 * /metrics sums the workers, SIGHUP reaches every worker, a killed worker is replaced, and SIGTERM
 * ends the workers and then the primary.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { parse, stringify } from "yaml";
import { runCli, startPostern, type LogLine, type Postern } from "./helpers/postern.js";
import { RawSmtp, authPlainCode } from "./helpers/raw-smtp.js";
import { startSink, type Sink } from "../delivery/helpers/sink.js";
import { login as webLogin } from "../web/helpers/web-client.js";

const JOHN = { address: "john@example.org", password: "correct horse battery staple" };
const JANE = { address: "jane@example.org", password: "jane's own passphrase" };
let server: Postern;
let sink: Sink;
let metricsPort: number;
let webPort: number;

before(async () => {
  sink = await startSink();
  server = await startPostern({
    users: [JOHN, JANE],
    config: {
      process: { workers: 2 },
      admin: { port: 0 },
      web: { address: "127.0.0.1", port: 0 },
      relay: { smarthost: `127.0.0.1:${sink.port}` },
      mynetworks: ["127.0.0.1/32"],
      auth: { throttle: { ipFailures: 10, accountFailures: 5, lockoutSec: 600, penaltyBaseMs: 0 } },
    },
  });
  metricsPort = (await server.waitForLog((l) => l.event === "admin-listening")).port as number;
  webPort = (await server.waitForLog((l) => l.event === "web-listening")).port as number;
});
after(async () => {
  await server?.cleanup();
  await sink?.close();
});

const workerPids = (): Map<number, number> => {
  const pids = new Map<number, number>();
  for (const l of server.logs) if (l.event === "worker-started") pids.set(l.worker as number, l.pid as number);
  return pids;
};

/** The worker of each of the `n` `connect` lines logged after `from` (an index into server.logs); log lines come in batches. */
async function connectWorkers(from: number, n: number): Promise<unknown[]> {
  const connects = () => server.logs.slice(from).filter((l) => l.event === "connect");
  await server.waitForLog(() => connects().length >= n);
  return connects().map((l) => l.worker);
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function relayOne(token: string): Promise<void> {
  const c = await RawSmtp.open(server.ports.mta);
  try {
    assert.equal((await c.reply()).code, 220);
    await c.expect("EHLO client.test", 250);
    await c.expect("MAIL FROM:<load@example.org>", 250);
    await c.expect("RCPT TO:<someone@elsewhere.test>", 250);
    await c.expect("DATA", 354);
    await c.expect(`Message-ID: <${token}@workers.test>\r\nSubject: ${token}\r\n\r\nbody\r\n.`, 250);
    await c.cmd("QUIT");
  } finally {
    c.close();
  }
}

/** One AUTH PLAIN on a new connection to port 465 (each goes to the next worker): its reply code. */
const authCode = (user: string, password: string) => authPlainCode(server.ports.submissions, user, password);

async function scrape(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

const sample = (text: string, series: string): number => {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
};

test("two workers start, each in a process of its own", async () => {
  const started = new Set<unknown>();
  await server.waitForLog((l) => l.event === "worker-started" && started.add(l.worker).size === 2);
  const pids = workerPids();
  assert.deepEqual([...pids.keys()].sort(), [1, 2]);
  for (const pid of pids.values()) assert.ok(alive(pid) && pid !== server.pid);
});

test("connections go to both workers; mail accepted by either is delivered exactly once; /metrics sums them", async () => {
  const before = await scrape();
  const from = server.logs.length;
  const tokens = Array.from({ length: 8 }, (_, i) => `w-${i}`);
  for (const token of tokens) await relayOne(token);
  await sink.waitForMessages(tokens.length, 20_000);

  const served = await connectWorkers(from, tokens.length);
  assert.equal(served.length, tokens.length);
  assert.deepEqual([...new Set(served)].sort(), [1, 2], "both workers served connections");
  const queued = () => server.logs.slice(from).filter((l) => l.event === "queued");
  await server.waitForLog(() => queued().length >= tokens.length);
  const queuedBy = queued().map((l) => l.worker);
  assert.deepEqual([...new Set(queuedBy)].sort(), [1, 2], "both workers committed messages");

  const delivered = sink.messages.map((m) => /Message-ID: <(w-\d+)@workers\.test>/.exec(m.data.toString())?.[1]);
  assert.deepEqual(delivered.filter((x) => x !== undefined).sort(), [...tokens].sort(), "each message once, none twice");

  // The counters of both workers, summed: every connection and message of this test.
  await server.waitForLog((l) => l.event === "delivered" && String(l.msg).length > 0);
  const after = await scrape();
  const diff = (series: string) => sample(after, series) - sample(before, series);
  assert.equal(diff('postern_connections_total{listener="mta"}'), tokens.length);
  assert.equal(diff('postern_messages_accepted_total{listener="mta"}'), tokens.length);
});

test("wrong web logins (on the primary) lock the account for SMTP AUTH on both workers", async () => {
  // From 127.0.0.2: its own IP counter (the next test counts 127.0.0.1's), the same /24 for the account.
  for (let i = 0; i < 5; i++) assert.equal((await webLogin(webPort, JANE.address, `guess-${i}`, "127.0.0.2")).reply.status, 401);
  assert.equal((await webLogin(webPort, JANE.address, JANE.password, "127.0.0.2")).reply.status, 429);
  const from = server.logs.length;
  const codes = [await authCode(JANE.address, JANE.password), await authCode(JANE.address, JANE.password)];
  assert.deepEqual([...new Set(await connectWorkers(from, 2))].sort(), [1, 2], "asked on both workers");
  assert.deepEqual(codes, [454, 454]);
});

test("wrong AUTHs spread over both workers lock the account as on one process: 535 × 5, then 454", async () => {
  const from = server.logs.length;
  const codes: number[] = [];
  for (let i = 0; i < 10; i++) codes.push(await authCode(JOHN.address, `guess-${i}`));
  assert.deepEqual([...new Set(await connectWorkers(from, 10))].sort(), [1, 2], "the attempts went to both workers");
  assert.deepEqual(codes, [535, 535, 535, 535, 535, 454, 454, 454, 454, 454], codes.join(" "));
  // Ten failures from one IP lock it on every worker: the right password is refused on both.
  const servedFrom = server.logs.length;
  const right = [await authCode(JOHN.address, JOHN.password), await authCode(JOHN.address, JOHN.password)];
  assert.deepEqual([...new Set(await connectWorkers(servedFrom, 2))].sort(), [1, 2]);
  assert.deepEqual(right, [454, 454]);
});

test("`postern queue` talks to the primary, which owns the queue", async () => {
  const r = await runCli(["queue", "list", "--json", "--config", server.configPath]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(Array.isArray(JSON.parse(r.stdout)), r.stdout);
});

test("SIGHUP reloads every worker: a new limits.messageSize is offered by both", async () => {
  const config = parse(await readFile(server.configPath, "utf8")) as Record<string, Record<string, unknown>>;
  config.limits = { ...config.limits, messageSize: 1_234_567 };
  await writeFile(server.configPath, stringify(config));
  const from = server.logs.length;
  server.kill("SIGHUP");
  const reloaded = new Set<unknown>();
  await server.waitForLog((l: LogLine) => {
    if (server.logs.indexOf(l) >= from && l.event === "worker-reload" && l.ok === true) reloaded.add(l.worker);
    return reloaded.size === 2;
  });
  await server.waitForLog((l) => l.event === "reload" && l.ok === true && server.logs.indexOf(l) >= from);
  const sizes: string[] = [];
  const servedFrom = server.logs.length;
  for (let i = 0; i < 2; i++) {
    const c = await RawSmtp.open(server.ports.mta);
    await c.reply();
    sizes.push(/SIZE \d+/.exec((await c.expect("EHLO client.test", 250)).text)?.[0] ?? "");
    c.close();
  }
  assert.deepEqual([...new Set(await connectWorkers(servedFrom, 2))].sort(), [1, 2]);
  assert.deepEqual(sizes, ["SIZE 1234567", "SIZE 1234567"]);
});

test("a worker killed with SIGKILL is logged and replaced; both serve again", async () => {
  const old = workerPids().get(1)!;
  const from = server.logs.length;
  process.kill(old, "SIGKILL");
  const exited = await server.waitForLog((l) => l.event === "worker-exited" && server.logs.indexOf(l) >= from);
  assert.equal(exited.worker, 1);
  assert.equal(exited.signal, "SIGKILL");
  const replaced = await server.waitForLog((l) => l.event === "worker-started" && l.worker === 1 && server.logs.indexOf(l) >= from);
  assert.notEqual(replaced.pid, old);
  const servedFrom = server.logs.length;
  for (let i = 0; i < 4; i++) await relayOne(`r-${i}`);
  assert.deepEqual([...new Set(await connectWorkers(servedFrom, 4))].sort(), [1, 2]);
});

test("SIGTERM drains the workers, then the primary stops; no worker is left", async () => {
  const pids = [...workerPids().values()];
  assert.equal(pids.length, 2);
  await server.stop("SIGTERM");
  assert.ok(server.logs.some((l) => l.event === "stopped"));
  // The workers exited before the primary did (it waits for them).
  for (const pid of pids) assert.equal(alive(pid), false, `worker pid ${pid} is gone`);
  assert.equal(server.stderr(), "");
});
