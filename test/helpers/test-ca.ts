/**
 * A throwaway certificate authority for tests (P-256, made with the openssl CLI): leaves for
 * given DNS names, optionally already expired, optionally through an intermediate. Peers that
 * verify against `certPem` as their CA see a real chain, as they would with a public CA.
 */
import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface IssuedCert {
  /** The leaf, then the intermediates (what a server presents). */
  certPem: string;
  keyPem: string;
  certFile: string;
  keyFile: string;
  /** The leaf alone. */
  leafPem: string;
}

export interface IssueOptions {
  /** DNS names for the subjectAltName; the first is also the CN. */
  names: string[];
  /** Valid from/until; default from yesterday for 2 days. An expired leaf: both in the past. */
  notBefore?: Date;
  notAfter?: Date;
}

export interface TestCa {
  certPem: string;
  certFile: string;
  keyFile: string;
  issue(o: IssueOptions): Promise<IssuedCert>;
  /** An intermediate CA under this one; its leaves' certPem carry it. */
  intermediate(name: string): Promise<TestCa>;
}

function opensslTime(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:T]/g, "")
    .replace(/\.\d+Z$/, "Z")
    .slice(2); // YYMMDDHHMMSSZ
}

const DAY = 86_400_000;

/** The files `openssl ca` keeps in `dir`, and its config. */
async function caFiles(dir: string): Promise<void> {
  await mkdir(join(dir, "newcerts"), { recursive: true });
  await writeFile(join(dir, "index.txt"), "");
  await writeFile(join(dir, "serial"), `${Date.now().toString(16).padStart(16, "0")}\n`);
  const cnf = join(dir, "ca.cnf");
  await writeFile(
    cnf,
    [
      "[ca]",
      "default_ca = test",
      "[test]",
      `dir = ${dir}`,
      "database = $dir/index.txt",
      "new_certs_dir = $dir/newcerts",
      "serial = $dir/serial",
      "certificate = $dir/ca.crt",
      "private_key = $dir/ca.key",
      "default_md = sha256",
      "policy = any",
      "unique_subject = no",
      "copy_extensions = none",
      "[any]",
      "commonName = supplied",
      "[leaf]",
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, digitalSignature",
      "extendedKeyUsage = serverAuth, clientAuth",
      "subjectAltName = $ENV::TEST_CA_SAN",
      "[sub]",
      "basicConstraints = critical, CA:TRUE, pathlen:0",
      "keyUsage = critical, keyCertSign, cRLSign",
      "",
    ].join("\n"),
  );
}

async function signWith(cnf: string, csr: string, out: string, section: "leaf" | "sub", san: string, from: Date, until: Date) {
  await run(
    "openssl",
    [
      "ca",
      "-batch",
      "-notext",
      "-config",
      cnf,
      "-extensions",
      section,
      "-startdate",
      opensslTime(from),
      "-enddate",
      opensslTime(until),
      "-in",
      csr,
      "-out",
      out,
    ],
    { env: { ...process.env, TEST_CA_SAN: san } },
  );
}

async function newKeyAndCsr(dir: string, base: string, cn: string): Promise<{ key: string; csr: string }> {
  const key = join(dir, `${base}.key`);
  const csr = join(dir, `${base}.csr`);
  await run("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${cn}`, "-keyout", key, "-out", csr]);
  return { key, csr };
}

function caAt(dir: string, certPem: string, chainBelowRoot: string): TestCa {
  const cnf = join(dir, "ca.cnf");
  let count = 0;
  return {
    certPem,
    certFile: join(dir, "ca.crt"),
    keyFile: join(dir, "ca.key"),
    async issue(o) {
      const base = `leaf${++count}`;
      const { key, csr } = await newKeyAndCsr(dir, base, o.names[0]!);
      const out = join(dir, `${base}.crt`);
      const from = o.notBefore ?? new Date(Date.now() - DAY);
      const until = o.notAfter ?? new Date(Date.now() + DAY);
      await signWith(cnf, csr, out, "leaf", o.names.map((n) => `DNS:${n}`).join(","), from, until);
      const leafPem = await readFile(out, "utf8");
      const certPem = leafPem + chainBelowRoot;
      const certFile = join(dir, `${base}-chain.crt`);
      await writeFile(certFile, certPem);
      return { certPem, keyPem: await readFile(key, "utf8"), certFile, keyFile: key, leafPem };
    },
    async intermediate(name) {
      const sub = join(dir, `sub${++count}`);
      await caFiles(sub);
      const { csr } = await newKeyAndCsr(sub, "ca", name);
      await signWith(cnf, csr, join(sub, "ca.crt"), "sub", "DNS:unused.invalid", new Date(Date.now() - DAY), new Date(Date.now() + 2 * DAY));
      const subPem = await readFile(join(sub, "ca.crt"), "utf8");
      return caAt(sub, subPem, subPem + chainBelowRoot);
    },
  };
}

/** A new root CA in `dir` (which must exist and be private to the test). */
export async function makeTestCa(dir: string, name = "Postern Test Root"): Promise<TestCa> {
  await caFiles(dir);
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-subj",
    `/CN=${name}`,
    "-days",
    "3",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-keyout",
    join(dir, "ca.key"),
    "-out",
    join(dir, "ca.crt"),
  ]);
  return caAt(dir, await readFile(join(dir, "ca.crt"), "utf8"), "");
}
