/**
 * `npm run bench [-- --quick] [--only Postern,Postfix] [--scenarios 1,2] [--runs N] [--keep] [--dkim]
 *   [--pin | --no-pin] [--profile] [--baseline DIR]`
 * Starts every contender on 127.0.0.1, runs the scenarios round-robin (so each round compares
 * contenders under the same machine noise), writes bench/results/<time>-<mode>.{md,json}.
 * --dkim adds "Postern (DKIM)", the same server signing every submitted message, beside "Postern".
 * --pin (default when there are ≥ 2 cores): servers on core 0, load generator and relay sink on
 * core 1 (`taskset`), so the client's own CPU does not decide the result.
 * --profile: Postern runs under `node --cpu-prof`; the .cpuprofile lands in bench/results/profiles/
 * (summarise it with `node dist/bench/profile-summary.js FILE`).
 */
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, totalmem, tmpdir, release } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { makeSelfSigned } from "../test/helpers/self-signed.js";
import { run } from "./contenders/common.js";
import { startSinkProcess } from "./sink-process.js";
import { scenarios, warmUp, type Measurement } from "./scenarios.js";
import { summarize, writeReport, type BenchReport } from "./report.js";
import { postern, posternBaseline, posternDkim, posternWorkers } from "./contenders/postern.js";
import { postfix } from "./contenders/postfix.js";
import { haraka, harakaDiscard } from "./contenders/haraka.js";
import { pinTree } from "./proc-tree.js";
import { bareSink } from "./contenders/sink.js";
import type { BenchUser, Contender, ContenderFactory } from "./contenders/types.js";

const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? (args[i + 1] ?? "") : undefined;
};
const quick = args.includes("--quick");
const runs = Number(flag("runs") ?? (quick ? 2 : 3));
const only = flag("only")
  ?.split(",")
  .map((s) => s.toLowerCase());
const wanted = flag("scenarios")?.split(",");
// --dkim-first: the signing server goes first in each round (to rule out an order effect).
const dkimPair = args.includes("--dkim-first") ? [posternDkim, postern] : args.includes("--dkim") ? [postern, posternDkim] : [postern];
// --baseline DIR: another build of Postern beside this one (a change measured in the same rounds).
const baselineDir = flag("baseline");
const baseline = baselineDir ? [posternBaseline(baselineDir)] : [];
const all: ContenderFactory[] = [...dkimPair, ...baseline, posternWorkers, postfix, haraka, harakaDiscard, bareSink];
const pin = args.includes("--no-pin") ? false : args.includes("--pin") || cpus().length >= 2;
const resultsDir = resolve(import.meta.dirname, "../../bench/results");
const startedAt = new Date().toISOString();
if (args.includes("--profile")) process.env.POSTERN_BENCH_PROFILE = join(resultsDir, "profiles", startedAt.replace(/[:.]/g, "-"));
// --only NAME: a contender's exact name picks it alone ("postern"), else any name containing it
// ("haraka": both); --dkim's signing server always comes with "Postern".
const picks = (f: ContenderFactory, o: string) =>
  f.name.toLowerCase() === o || (!all.some((g) => g.name.toLowerCase() === o) && f.name.toLowerCase().includes(o));
const factories = all.filter((f) => !only || only.some((o) => picks(f, o)) || (f === posternDkim && dkimPair.includes(f)) || baseline.includes(f));
const chosen = scenarios.filter((s) => !wanted || wanted.includes(s.id));

const say = (text: string) => process.stderr.write(text + "\n");

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "postern-bench-"));
  // Postfix and Dovecot drop privileges: their own users must be able to pass through.
  chmodSync(work, 0o711);
  const started: Contender[] = [];
  const stopAll = async () => {
    for (const c of started.splice(0)) await c.stop().catch((e: Error) => say(`stopping ${c.name}: ${e.message}`));
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => void stopAll().then(() => process.exit(130)));
  // The load generator (this process) and the relay sink forked next share core 1.
  if (pin) pinTree([process.pid], "1");
  const relaySink = await startSinkProcess({});
  try {
    const key = join(work, "key.pem");
    const cert = join(work, "cert.pem");
    await makeSelfSigned({ cn: "bench.test", key, cert });
    const users: BenchUser[] = Array.from({ length: 1 + (quick ? 16 : 32) * runs }, (_, i) => ({
      address: `bench${i}@example.org`,
      password: randomBytes(12).toString("base64url"),
    }));

    const report: BenchReport = {
      startedAt,
      machine: {
        ...(await machine()),
        pinning: pin
          ? "taskset: each server on core 0 (a multi-process one on all cores); load generator and relay sink on core 1"
          : "none (servers, load generator and sink share every core)",
        "load average (1 min) at start": loadavg()[0]!.toFixed(2),
      },
      mode: quick ? "quick" : "full",
      contenders: [],
      rows: {},
      units: {},
      raw: {},
    };
    for (const f of factories) {
      say(`preparing ${f.name}…`);
      const skip = await f.prepare().catch((e: Error) => `prepare failed: ${e.message}`);
      if (skip) {
        report.contenders.push({ name: f.name, status: `skipped: ${skip}` });
        say(`  skipped: ${skip}`);
        continue;
      }
      try {
        const dir = join(work, f.name.replace(/\W/g, "-"));
        const c = await f.start({ workDir: dir, sinkPort: relaySink.port, tls: { key, cert }, users });
        started.push(c);
        // Started from this process, it inherited core 1: move it to the server's core(s).
        if (pin) pinTree(c.pids(), c.cores === "all" ? `0-${cpus().length - 1}` : "0");
        report.contenders.push({ name: c.name, status: "ran", work: c.work, passwordScheme: c.passwordScheme, notes: c.notes });
      } catch (e) {
        report.contenders.push({ name: f.name, status: `skipped: start failed: ${(e as Error).message.split("\n")[0]}` });
        say(`  start failed: ${(e as Error).message}`);
      }
    }

    const runId = randomBytes(4).toString("hex");
    if (chosen.some((s) => s.id === "1" || s.id === "2" || s.id === "6")) {
      for (const c of started) {
        say(`warming up ${c.name} (not measured)`);
        await warmUp({ contender: c, relaySink, users, quick, runId, round: 0, rounds: runs }).catch((e: Error) => say(`  warm-up: ${e.message}`));
      }
    }
    for (let round = 1; round <= runs; round++) {
      for (const s of chosen) {
        // Heavy one-shot scenarios (large messages, 10,000 sockets) run once in quick mode.
        if (quick && round > 1 && (s.id === "3" || s.id === "4")) continue;
        for (const c of started) {
          say(`round ${round}/${runs} · scenario ${s.id} · ${c.name}`);
          let ms: Measurement[];
          try {
            ms = await s.run({ contender: c, relaySink, users, quick, runId, round, rounds: runs });
          } catch (e) {
            ms = [{ key: `${s.id} (failed)`, value: NaN, unit: "", higherIsBetter: true, detail: {}, errors: [(e as Error).message] }];
          }
          for (const m of ms) {
            report.units[m.key] = { unit: m.unit, higherIsBetter: m.higherIsBetter };
            ((report.raw[m.key] ??= {})[c.name] ??= []).push(m);
            say(`  ${m.key}: ${Number.isNaN(m.value) ? "–" : m.value.toFixed(1)} ${m.unit}${m.errors.length ? `  ⚠ ${m.errors[0]}` : ""}`);
          }
        }
      }
    }
    for (const [key, byName] of Object.entries(report.raw)) {
      report.rows[key] = Object.fromEntries(Object.entries(byName).map(([n, ms]) => [n, summarize(ms)]));
    }
    report.machine["load average (1 min) at end"] = loadavg()[0]!.toFixed(2);
    const files = writeReport(resultsDir, report);
    say(`\nwrote ${files.md}\n      ${files.json}`);
  } finally {
    await stopAll();
    await relaySink.stop();
    if (process.env.POSTERN_BENCH_PROFILE && process.env.POSTERN_BENCH_PROFILE !== "1") say(`CPU profiles in ${process.env.POSTERN_BENCH_PROFILE}`);
    if (args.includes("--keep")) say(`kept ${work} (configs, logs, profiles)`);
    else rmSync(work, { recursive: true, force: true });
  }
}

async function machine(): Promise<Record<string, string | number>> {
  const fdLimit = (await run("sh", ["-c", "ulimit -n"])).stdout.trim();
  const disk = (await run("sh", ["-c", `df -T ${tmpdir()} | tail -1 | awk '{print $2}'`]).catch(() => ({ stdout: "?" }))).stdout.trim();
  return {
    cpu: `${cpus().length} × ${cpus()[0]?.model ?? "?"}`,
    memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
    kernel: release(),
    node: process.version,
    "open files limit": fdLimit,
    [`${tmpdir()} file system`]: disk,
  };
}

await main();
