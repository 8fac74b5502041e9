/** A throwaway self-signed certificate for localhost, made once per test process with openssl. */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface TestCert {
  key: string;
  cert: string;
}

let cached: Promise<TestCert> | undefined;

async function generate(): Promise<TestCert> {
  const dir = await mkdtemp(join(tmpdir(), "postern-cert-"));
  try {
    const key = join(dir, "k");
    const cert = join(dir, "c");
    await run("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost",
      "-days",
      "2",
      "-keyout",
      key,
      "-out",
      cert,
    ]);
    return { key: await readFile(key, "utf8"), cert: await readFile(cert, "utf8") };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function testCert(): Promise<TestCert> {
  cached ??= generate();
  return cached;
}
