/**
 * A real, throwaway PostgreSQL for one test file: initdb into a temp folder as an unprivileged user
 * (tests run as root, and initdb refuses root), the server on an ephemeral loopback port with its
 * socket in that folder, one database. stop() shuts it down (pg_ctl stop -m fast) and removes it all.
 * Debian's `postgresql` package (.ci/run) puts the binaries in /usr/lib/postgresql/<major>/bin.
 */
import { execFile, spawn } from "node:child_process";
import { chown, mkdtemp, readdir, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "./test-config.js";

const run = promisify(execFile);

export interface TestPostgres {
  /** postgres://postern@127.0.0.1:PORT/postern: trust authentication, loopback only. */
  url: string;
  /** A second database's URL on the same server (created on first ask). */
  database(name: string): Promise<string>;
  port: number;
  stop(): Promise<void>;
}

/** The newest installed major version's bin directory. */
async function binDir(): Promise<string> {
  const root = "/usr/lib/postgresql";
  const majors = existsSync(root) ? (await readdir(root)).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a)) : [];
  const dir = majors.map((m) => join(root, m, "bin")).find((d) => existsSync(join(d, "initdb")));
  if (!dir) throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)");
  return dir;
}

/** As root: the postgres account (else nobody) runs the server; otherwise ourselves. */
async function serverAccount(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ["postgres", "nobody"]) {
    try {
      const [uid, gid] = await Promise.all([run("id", ["-u", name]), run("id", ["-g", name])]);
      return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
    } catch {
      // try the next
    }
  }
  throw new Error("no unprivileged account (postgres or nobody) to run PostgreSQL as");
}

export async function startPostgres(): Promise<TestPostgres> {
  const bin = await binDir();
  const account = await serverAccount();
  const dir = await mkdtemp(join(tmpdir(), "postern-pg-"));
  const data = join(dir, "data");
  const as = account ? { uid: account.uid, gid: account.gid } : {};
  if (account) await chown(dir, account.uid, account.gid);
  // --no-sync: the cluster's files need no flush for a throwaway run; the server itself runs fsync=on.
  await run(join(bin, "initdb"), ["-D", data, "-U", "postern", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"], {
    ...as,
    cwd: dir,
  });
  let port = 0;
  let server: ReturnType<typeof spawn> | undefined;
  let output = "";
  // A port found free may be taken before the server binds it: try again with another.
  for (let attempt = 0; attempt < 5 && !server; attempt++) {
    port = await freePort();
    const child = spawn(
      join(bin, "postgres"),
      ["-D", data, "-k", dir, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-c", "synchronous_commit=on"],
      { ...as, cwd: dir, stdio: ["ignore", "ignore", "pipe"] },
    );
    output = "";
    const ready = await new Promise<boolean>((resolve) => {
      child.stderr!.setEncoding("utf8");
      child.stderr!.on("data", (chunk: string) => {
        if (output.length < 100_000) output += chunk;
        if (output.includes("database system is ready to accept connections")) resolve(true);
      });
      child.once("exit", () => resolve(false));
    });
    if (ready) server = child;
    else if (!/could not bind|Address already in use/.test(output)) break;
  }
  if (!server) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`PostgreSQL did not start:\n${output}`);
  }
  const exited = new Promise<void>((resolve) => server.once("exit", () => resolve()));
  // A test process that ends without stop() (a crash, a timeout) takes its server with it.
  const orphaned = () => server.kill("SIGQUIT");
  process.once("exit", orphaned);
  const urlOf = (db: string) => `postgres://postern@127.0.0.1:${port}/${db}`;
  const created = new Set<string>();
  const database = async (name: string) => {
    if (!created.has(name)) {
      const admin = new pg.Client({ connectionString: urlOf("postgres") });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
      } finally {
        await admin.end();
      }
      created.add(name);
    }
    return urlOf(name);
  };
  const url = await database("postern");
  let stopped = false;
  return {
    url,
    port,
    database,
    async stop() {
      if (stopped) return;
      stopped = true;
      process.off("exit", orphaned);
      try {
        await run(join(bin, "pg_ctl"), ["stop", "-D", data, "-m", "fast", "-w"], { ...as, cwd: dir });
      } catch {
        server.kill("SIGQUIT"); // immediate shutdown
      }
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
