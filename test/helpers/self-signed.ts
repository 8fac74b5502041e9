/** A self-signed P-256 certificate and key made by `openssl req -x509`, for tests that need files. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

export async function makeSelfSigned(o: { cn: string; cert: string; key: string; days?: number; san?: string }): Promise<void> {
  const args = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${o.cn}`];
  if (o.san) args.push("-addext", `subjectAltName=${o.san}`);
  await run("openssl", [...args, "-days", String(o.days ?? 2), "-keyout", o.key, "-out", o.cert]);
}
