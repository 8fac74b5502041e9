/**
 * The load generator: concurrent sessions, messages per session, size, TLS mode, AUTH mechanism,
 * pipelining (RFC 2920). Measures msgs/s, MAIL→final-250 latency, connection set-up
 * (TCP + TLS + EHLO + AUTH), counts every reply code, and stops by itself at a deadline.
 * It returns the body hashes of every accepted message so the caller can check the sink.
 */
import { BenchSmtpClient, ReplyError, type TlsMode } from "./smtp-client.js";
import { benchMessage, dataBytes } from "./message.js";

export interface LoadOptions {
  port: number;
  tls: TlsMode;
  auth?: { mechanism: "PLAIN" | "LOGIN"; user: string; password: string };
  sessions: number;
  concurrency: number;
  messagesPerSession: number;
  messageSize: number;
  pipelining: boolean;
  from: string;
  to: string;
  runId: string;
  /** Whole run deadline: sessions still open then are cut and counted as errors. */
  deadlineMs: number;
}

export interface LoadResult {
  accepted: number;
  elapsedMs: number;
  msgsPerSec: number;
  latencyMs: { p50: number; p99: number };
  setupMs: { p50: number; p99: number };
  replyCodes: Record<string, number>;
  errors: string[];
  /** Body hash of every message answered 250: what the sink must receive. */
  acceptedHashes: string[];
  /** Date.now() when each of those got its 250. */
  acceptedAt: number[];
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Opens a session up to the point where MAIL may be sent. */
export async function openSession(o: Pick<LoadOptions, "port" | "tls" | "auth">, codes: Map<number, number>): Promise<BenchSmtpClient> {
  const { client, greeting } = await BenchSmtpClient.open(o.port, o.tls, codes);
  try {
    if (greeting.code !== 220) throw new ReplyError("greeting", greeting);
    await client.command("EHLO bench.client.test", 250);
    if (o.tls === "starttls") {
      await client.startTls();
      await client.command("EHLO bench.client.test", 250);
    }
    if (o.auth) await client.auth(o.auth.mechanism, o.auth.user, o.auth.password);
    return client;
  } catch (err) {
    client.destroy();
    throw err;
  }
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const codes = new Map<number, number>();
  const latencies: number[] = [];
  const setups: number[] = [];
  const errors: string[] = [];
  const acceptedHashes: string[] = [];
  const acceptedAt: number[] = [];
  const open = new Set<BenchSmtpClient>();
  let nextSession = 0;
  let stopped = false;
  const start = performance.now();
  const deadline = setTimeout(() => {
    stopped = true;
    errors.push(`deadline of ${o.deadlineMs} ms reached with ${open.size} sessions open`);
    for (const c of open) c.destroy();
  }, o.deadlineMs);

  const session = async (s: number) => {
    const t0 = performance.now();
    const client = await openSession(o, codes);
    open.add(client);
    setups.push(performance.now() - t0);
    try {
      for (let m = 0; m < o.messagesPerSession && !stopped; m++) {
        const msg = benchMessage(`${o.runId}-${s}-${m}`, o.messageSize, o.from, o.to, new Date());
        const t1 = performance.now();
        const mail = `MAIL FROM:<${o.from}> SIZE=${msg.size}`;
        const rcpt = `RCPT TO:<${o.to}>`;
        if (o.pipelining) {
          void client.write(`${mail}\r\n${rcpt}\r\nDATA\r\n`);
          for (const [step, want] of [
            ["MAIL", 250],
            ["RCPT", 250],
            ["DATA", 354],
          ] as const) {
            const r = await client.read();
            if (r.code !== want) throw new ReplyError(step, r);
          }
        } else {
          await client.command(mail, 250, "MAIL");
          await client.command(rcpt, 250, "RCPT");
          await client.command("DATA", 354, "DATA");
        }
        for (const part of dataBytes(msg)) await client.write(part);
        const final = await client.read();
        if (final.code !== 250) throw new ReplyError("end of DATA", final);
        latencies.push(performance.now() - t1);
        acceptedHashes.push(msg.bodyHash);
        acceptedAt.push(Date.now());
      }
      await client.quit();
    } finally {
      open.delete(client);
      client.destroy();
    }
  };

  const worker = async () => {
    while (!stopped && nextSession < o.sessions) {
      const s = nextSession++;
      await session(s).catch((err: Error) => {
        if (!stopped) errors.push(err.message);
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, o.sessions) }, worker));
  clearTimeout(deadline);
  const elapsedMs = performance.now() - start;
  return {
    accepted: acceptedHashes.length,
    elapsedMs,
    msgsPerSec: acceptedHashes.length / (elapsedMs / 1000),
    latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99) },
    setupMs: { p50: percentile(setups, 50), p99: percentile(setups, 99) },
    replyCodes: Object.fromEntries([...codes].map(([k, v]) => [String(k), v])),
    errors,
    acceptedHashes,
    acceptedAt,
  };
}

/** Scenario 4: opens `count` plain sessions, each parked after EHLO; returns how many got there. */
export async function parkSessions(port: number, count: number, deadlineMs: number): Promise<{ parked: BenchSmtpClient[]; errors: string[] }> {
  const codes = new Map<number, number>();
  const parked: BenchSmtpClient[] = [];
  const errors: string[] = [];
  const until = Date.now() + deadlineMs;
  let next = 0;
  const worker = async () => {
    while (next < count && Date.now() < until) {
      next++;
      try {
        parked.push(await openSession({ port, tls: "none" }, codes));
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: 50 }, worker));
  return { parked, errors };
}

/**
 * Scenario 5: opens one TLS session per user, then sends every AUTH at once and times the burst
 * until the last 235: AUTH verifications per second, TLS cost excluded.
 */
export async function authBurst(port: number, users: { user: string; password: string }[]): Promise<{ perSec: number; ok: number; errors: string[] }> {
  const codes = new Map<number, number>();
  const clients: BenchSmtpClient[] = [];
  const errors: string[] = [];
  for (const _ of users) clients.push(await openSession({ port, tls: "starttls" }, codes));
  const t0 = performance.now();
  const results = await Promise.allSettled(clients.map((c, i) => c.auth("PLAIN", users[i]!.user, users[i]!.password)));
  const elapsed = performance.now() - t0;
  for (const r of results) if (r.status === "rejected") errors.push(String(r.reason));
  await Promise.all(clients.map((c) => c.quit()));
  const ok = results.filter((r) => r.status === "fulfilled").length;
  return { perSec: ok / (elapsed / 1000), ok, errors };
}
