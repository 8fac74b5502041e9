/**
 * The bench sink: a bare Node SMTP server that accepts and discards, keeping only the SHA-256 of
 * each body and its arrival time. It is the relay target of every contender and, with TLS and
 * AUTH (any password), the "ceiling" contender: the fastest SMTP a Node process does here.
 *
 * Run as a child process (`node dist/bench/sink.js '<json options>'`): it reports its port over
 * IPC and answers { cmd: "stats" } with what arrived.
 */
import { createHash, type Hash } from "node:crypto";
import { createServer as createNetServer, type Socket, type AddressInfo } from "node:net";
import { createSecureContext, createServer as createTlsServer, TLSSocket, type SecureContext } from "node:tls";
import { readFileSync } from "node:fs";

export interface SinkOptions {
  /** Key and certificate files: enables STARTTLS on `port` and implicit TLS on a second port. */
  tls?: { key: string; cert: string };
  /** Offer AUTH PLAIN LOGIN and accept any credentials. */
  auth?: boolean;
}

export interface SinkStats {
  count: number;
  hashes: string[];
  /** Date.now() at each arrival, in the order of `hashes`. */
  arrivals: number[];
  /** Messages that arrived with at least one DKIM-Signature field (the DKIM contender must sign all). */
  dkimSigned: number;
}

const CRLF = Buffer.from("\r\n");

class SinkSession {
  private buffered = "";
  private inData = false;
  private pending: Buffer = Buffer.alloc(0);
  private inHeader = true;
  private signed = false;
  private hash: Hash | null = null;
  private authStep: "none" | "login-user" | "login-pass" = "none";

  constructor(
    private socket: Socket,
    private readonly tlsContext: SecureContext | undefined,
    private readonly opts: SinkOptions,
    private readonly stats: SinkStats,
  ) {
    this.attach(socket);
    socket.write("220 sink.bench.test ESMTP sink\r\n");
  }

  private attach(socket: Socket): void {
    socket.on("data", (chunk: Buffer) => this.received(chunk));
    socket.on("error", () => socket.destroy());
  }

  private received(chunk: Buffer): void {
    if (this.inData) {
      this.dataChunk(chunk);
      return;
    }
    this.buffered += chunk.toString("latin1");
    let at: number;
    let out = "";
    while (!this.inData && (at = this.buffered.indexOf("\r\n")) >= 0) {
      const line = this.buffered.slice(0, at);
      this.buffered = this.buffered.slice(at + 2);
      const answer = this.command(line);
      if (answer === "starttls") {
        this.socket.write(out + "220 2.0.0 Ready\r\n");
        this.socket.removeAllListeners("data");
        this.buffered = "";
        this.socket = new TLSSocket(this.socket, { isServer: true, secureContext: this.tlsContext });
        this.attach(this.socket);
        return;
      }
      out += answer;
    }
    if (out) this.socket.write(out);
    if (this.inData && this.buffered.length > 0) {
      const rest = Buffer.from(this.buffered, "latin1");
      this.buffered = "";
      this.dataChunk(rest);
    }
  }

  private command(line: string): string {
    if (this.authStep === "login-user") {
      this.authStep = "login-pass";
      return "334 UGFzc3dvcmQ6\r\n";
    }
    if (this.authStep === "login-pass") {
      this.authStep = "none";
      return "235 2.7.0 Authentication successful\r\n";
    }
    const verb = line.slice(0, 4).toUpperCase();
    switch (verb) {
      case "EHLO": {
        const tlsActive = this.socket instanceof TLSSocket;
        const ext = ["PIPELINING", "SIZE 104857600", "8BITMIME", "ENHANCEDSTATUSCODES"];
        if (this.opts.tls && !tlsActive) ext.push("STARTTLS");
        if (this.opts.auth && (tlsActive || !this.opts.tls)) ext.push("AUTH PLAIN LOGIN");
        return ["sink.bench.test", ...ext].map((e, i, all) => `250${i === all.length - 1 ? " " : "-"}${e}\r\n`).join("");
      }
      case "HELO":
        return "250 sink.bench.test\r\n";
      case "STAR":
        return "starttls";
      case "AUTH":
        if (/^AUTH LOGIN$/i.test(line)) {
          this.authStep = "login-user";
          return "334 VXNlcm5hbWU6\r\n";
        }
        return "235 2.7.0 Authentication successful\r\n";
      case "MAIL":
        return "250 2.1.0 Ok\r\n";
      case "RCPT":
        return "250 2.1.5 Ok\r\n";
      case "DATA":
        this.inData = true;
        this.inHeader = true;
        this.signed = false;
        this.hash = createHash("sha256");
        return "354 End data with <CR><LF>.<CR><LF>\r\n";
      case "QUIT":
        this.socket.end("221 2.0.0 Bye\r\n");
        return "";
      default:
        return "250 2.0.0 Ok\r\n";
    }
  }

  /** Line by line: unstuff dots (RFC 5321 §4.5.2), skip the header, hash the body, stop at ".". */
  private dataChunk(chunk: Buffer): void {
    const buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    let pos = 0;
    let at: number;
    while ((at = buf.indexOf(CRLF, pos)) >= 0) {
      let line = buf.subarray(pos, at);
      pos = at + 2;
      if (line.length === 1 && line[0] === 0x2e) {
        this.stats.count++;
        this.stats.hashes.push(this.hash!.digest("hex"));
        this.stats.arrivals.push(Date.now());
        if (this.signed) this.stats.dkimSigned++;
        this.inData = false;
        this.pending = Buffer.alloc(0);
        this.socket.write("250 2.0.0 Ok: discarded\r\n");
        if (pos < buf.length) this.received(buf.subarray(pos));
        return;
      }
      if (line[0] === 0x2e) line = line.subarray(1);
      if (this.inHeader) {
        if (line.length === 0) this.inHeader = false;
        else if (line.length > 15 && line.toString("latin1", 0, 15).toLowerCase() === "dkim-signature:") this.signed = true;
        continue;
      }
      this.hash!.update(line);
      this.hash!.update(CRLF);
    }
    this.pending = Buffer.from(buf.subarray(pos));
  }
}

export async function startSink(opts: SinkOptions): Promise<{ port: number; implicitPort?: number; stats: SinkStats }> {
  const stats: SinkStats = { count: 0, hashes: [], arrivals: [], dkimSigned: 0 };
  const material = opts.tls ? { key: readFileSync(opts.tls.key), cert: readFileSync(opts.tls.cert) } : undefined;
  const context = material ? createSecureContext(material) : undefined;
  const plain = createNetServer((s) => new SinkSession(s, context, opts, stats));
  const listen = (srv: ReturnType<typeof createNetServer>) =>
    new Promise<number>((resolve) => srv.listen(0, "127.0.0.1", () => resolve((srv.address() as AddressInfo).port)));
  const port = await listen(plain);
  let implicitPort: number | undefined;
  if (material) {
    const implicit = createTlsServer(material, (s) => new SinkSession(s, context, opts, stats));
    implicitPort = await listen(implicit);
  }
  return { port, implicitPort, stats };
}

// Child-process entry: options as JSON in argv[2]; port and stats over IPC.
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split("/").slice(-2).join("/")) && process.send) {
  const sink = await startSink(JSON.parse(process.argv[2] ?? "{}") as SinkOptions);
  process.send({ ready: true, port: sink.port, implicitPort: sink.implicitPort, pid: process.pid });
  process.on("message", (m: { cmd: string }) => {
    if (m.cmd === "stats") process.send!({ stats: sink.stats });
    if (m.cmd === "reset") {
      sink.stats.count = 0;
      sink.stats.hashes = [];
      sink.stats.arrivals = [];
      sink.stats.dkimSigned = 0;
      process.send!({ reset: true });
    }
  });
  process.on("disconnect", () => process.exit(0));
}
