/**
 * `openssl s_client` against a listener on 127.0.0.1: one handshake with given protocol/cipher
 * flags, or an interactive session that asks for a TLS 1.2 renegotiation ("R" on its stdin), and a
 * PROXY protocol relay so the same probes reach listeners behind a load balancer.
 */
import { spawn } from "node:child_process";
import { connect as netConnect, createServer, type AddressInfo, type Server } from "node:net";

export interface Target {
  port: number;
  /** STARTTLS (ports 25/587) rather than implicit TLS (465). */
  starttls?: boolean;
}

function targetArgs(t: Target): string[] {
  return ["-connect", `127.0.0.1:${t.port}`, ...(t.starttls ? ["-starttls", "smtp"] : [])];
}

export interface Handshake {
  ok: boolean;
  /** Negotiated protocol ("TLSv1.2"), when the handshake completed. */
  protocol?: string;
  cipher?: string;
  /** stdout and stderr, for assertion messages. */
  output: string;
}

/** One handshake with stdin closed: s_client exits right after it. */
export function handshake(t: Target, flags: string[]): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const child = spawn("openssl", ["s_client", ...targetArgs(t), ...flags], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill(), 15_000);
    child.on("error", reject);
    child.on("close", () => {
      clearTimeout(timer);
      // "New, TLSv1.3, Cipher is X"; for TLS 1.2 the version there is the suite's oldest, so the
      // session block's "Protocol :" counts (TLS 1.3 sessions arrive after the handshake, unprinted).
      const line = /^New, (\S+), Cipher is (\S+)/m.exec(output);
      const cipher = line?.[2];
      const protocol = /^\s*Protocol\s*:\s*(\S+)/m.exec(output)?.[1] ?? (line?.[1] === "TLSv1.3" ? "TLSv1.3" : undefined);
      const ok = cipher !== undefined && cipher !== "(NONE)";
      resolve({ ok, protocol: ok ? protocol : undefined, cipher: ok ? cipher : undefined, output });
    });
  });
}

export interface Renegotiation {
  /** The server answered a NOOP sent after the renegotiation: it went through. */
  answeredAfter: boolean;
  output: string;
}

/**
 * TLS 1.2 session: NOOP (so the session is up), then "R" — s_client's renegotiate command, read
 * only as the first byte of a read, so each step waits for the one before — then NOOP again.
 */
export function renegotiate(t: Target): Promise<Renegotiation> {
  return new Promise((resolve, reject) => {
    const child = spawn("openssl", ["s_client", ...targetArgs(t), "-tls1_2", "-crlf"], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let step = 0;
    const replies = () => (stdout.match(/^250 [^\r\n]*\r?\n/gm) ?? []).length;
    const advance = () => {
      if (step === 0 && (t.starttls ? /^---\s*$/m.test(stdout) && /SSL-Session/.test(stdout) : /^220 /m.test(stdout))) {
        step = 1;
        child.stdin.write("noop\n");
      } else if (step === 1 && replies() >= 1) {
        step = 2;
        child.stdin.write("R\n");
      } else if (step === 2 && /RENEGOTIATING/.test(stderr + stdout)) {
        step = 3;
        child.stdin.write("noop\n");
      } else if (step === 3 && replies() >= 2) {
        step = 4;
        child.stdin.end("quit\n");
      }
    };
    child.stdout.on("data", (d: Buffer) => ((stdout += d.toString()), advance()));
    child.stderr.on("data", (d: Buffer) => ((stderr += d.toString()), advance()));
    child.stdin.on("error", () => undefined); // s_client may be gone when we write
    const timer = setTimeout(() => child.kill(), 15_000);
    child.on("error", reject);
    child.on("close", () => {
      clearTimeout(timer);
      if (step < 2) return reject(new Error(`the TLS 1.2 session never came up: ${stdout}${stderr}`));
      resolve({ answeredAfter: step === 4, output: stdout + stderr });
    });
  });
}

/** A load balancer on 127.0.0.1: each connection gets a PROXY v1 header, then bytes flow both ways. */
export async function proxyRelay(upstreamPort: number, clientIp = "192.0.2.7"): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((down) => {
    const up = netConnect({ host: "127.0.0.1", port: upstreamPort }, () => {
      up.write(`PROXY TCP4 ${clientIp} 127.0.0.1 40000 ${upstreamPort}\r\n`);
      down.pipe(up);
      up.pipe(down);
    });
    const end = () => (down.destroy(), up.destroy());
    down.on("error", end).on("close", end);
    up.on("error", end).on("close", end);
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", () => ok()));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}
