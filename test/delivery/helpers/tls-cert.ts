/** A throwaway self-signed certificate for localhost, made once per test process with openssl. */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeSelfSigned } from "../../helpers/self-signed.js";

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
    await makeSelfSigned({ cn: "localhost", san: "DNS:localhost", key, cert });
    return { key: await readFile(key, "utf8"), cert: await readFile(cert, "utf8") };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function testCert(): Promise<TestCert> {
  cached ??= generate();
  return cached;
}
