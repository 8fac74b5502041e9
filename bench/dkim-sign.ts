/**
 * `node dist/bench/dkim-sign.js [--messages N]`: the CPU the DKIM signer itself spends per 4 KB
 * message (the content step as the server runs it: header parse, relaxed body hash, signatures),
 * Ed25519 alone, RSA-2048 alone and both. In-process, CPU time (process.cpuUsage: every thread,
 * the RSA signatures run on libuv's pool), so a busy shared machine moves it little; the end-to-end
 * cost inside the server is measured by `npm run bench -- --only postern --dkim --scenarios 1`.
 */
import { generateKeyPairSync } from "node:crypto";
import type { SigningKey } from "../src/dkim/keys.js";
import { DkimSigner } from "../src/dkim/signer.js";
import type { ContentContext } from "../src/smtp/content-steps.js";
import { benchMessage } from "./message.js";

const args = process.argv.slice(2);
const at = args.indexOf("--messages");
const messages = at >= 0 ? Number(args[at + 1]) : 2000;

const DOMAIN = "example.org";
const keyOf = (algorithm: "ed25519" | "rsa"): SigningKey => ({
  domain: DOMAIN,
  selector: `bench-${algorithm}`,
  algorithm,
  privateKey: algorithm === "ed25519" ? generateKeyPairSync("ed25519").privateKey : generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey,
});
const ed = keyOf("ed25519");
const rsa = keyOf("rsa");

async function cpuPerMessage(keys: SigningKey[], count: number): Promise<number> {
  const signer = new DkimSigner({ keys: () => keys });
  const start = process.cpuUsage();
  for (let i = 0; i < count; i++) {
    const m = benchMessage(`dkim-${i}`, 4096, `bench0@${DOMAIN}`, "dest@remote.bench.test", new Date());
    const ctx = { envelope: { client: { authUser: `bench0@${DOMAIN}` } }, headers: {}, headerSection: m.head } as unknown as ContentContext;
    const run = signer.begin(ctx);
    if (!run) throw new Error("the signer declined the message");
    for (const chunk of m.body) run.body(chunk);
    const result = await run.finish();
    if (result.prependHeaders?.length !== keys.length) throw new Error("missing signatures");
  }
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000 / count;
}

/** The message itself (built the same way, not signed): subtracted so only the signer counts. */
async function baseline(count: number): Promise<number> {
  const start = process.cpuUsage();
  for (let i = 0; i < count; i++) benchMessage(`dkim-${i}`, 4096, `bench0@${DOMAIN}`, "dest@remote.bench.test", new Date());
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000 / count;
}

// Warm-up (JIT), not measured.
await cpuPerMessage([ed, rsa], Math.min(500, messages));
const base = await baseline(messages);
const rows: [string, SigningKey[]][] = [
  ["Ed25519", [ed]],
  ["RSA-2048", [rsa]],
  ["Ed25519 + RSA-2048", [ed, rsa]],
];
for (const [name, keys] of rows) {
  const ms = (await cpuPerMessage(keys, messages)) - base;
  process.stdout.write(`${name.padEnd(20)} ${ms.toFixed(3)} ms CPU per 4 KB message (${messages} messages)\n`);
}
