/**
 * SCRAM-SHA-256-PLUS with tls-exporter (RFC 5802, RFC 9266) against the real server: `postern send`
 * on 465 and after STARTTLS, a client-final carrying another TLS connection's binding (a relay
 * between two connections), the downgrade refusal, and no -PLUS offered over TLS 1.2.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { once } from "node:events";
import { ScramSha256Client } from "../../src/sasl/scram-sha-256.js";
import { tlsExporterBinding } from "../../src/sasl/tls-exporter.js";
import { BIN, ROOT, startPostern, type Postern } from "./helpers/postern.js";

const USER = { address: "john@example.org", password: "correct horse battery" };
type TlsVersion = "TLSv1.2" | "TLSv1.3";

function send(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env, POSTERN_PASSWORD: USER.password };
    const child = execFile(process.execPath, [BIN, "send", ...args], { cwd: ROOT, env }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin?.end();
  });
}

/** A minimal SMTP client on a TLS connection of a chosen version: one command, one (final) reply. */
class TlsDialog {
  private buffer = "";
  private wake: (() => void) | null = null;

  private constructor(readonly socket: TLSSocket) {
    this.listen(socket);
  }

  /** Implicit TLS (465), or plain then STARTTLS (587); EHLO sent, its reply in `ehlo`. */
  static async open(port: number, how: { starttls: boolean; maxVersion: TlsVersion }): Promise<{ dialog: TlsDialog; ehlo: string }> {
    const tls = (over?: Socket) =>
      tlsConnect({
        ...(over ? { socket: over } : { host: "127.0.0.1", port }),
        rejectUnauthorized: false,
        servername: "localhost",
        maxVersion: how.maxVersion,
      });
    let socket: TLSSocket;
    if (how.starttls) {
      const plain = netConnect({ host: "127.0.0.1", port });
      let text = "";
      const until = async (code: string) => {
        while (!new RegExp(`^${code} `, "m").test(text)) text += ((await once(plain, "data")) as [Buffer])[0].toString();
        text = "";
      };
      await until("220");
      plain.write("EHLO client.test\r\n");
      await until("250");
      plain.write("STARTTLS\r\n");
      await until("220");
      socket = tls(plain);
    } else socket = tls();
    await once(socket, "secureConnect");
    const dialog = new TlsDialog(socket);
    if (!how.starttls) await dialog.reply();
    return { dialog, ehlo: await dialog.cmd("EHLO client.test") };
  }

  private listen(socket: TLSSocket): void {
    socket.on("data", (d: Buffer) => {
      this.buffer += d.toString();
      this.wake?.();
    });
    socket.on("error", () => undefined);
  }

  async reply(): Promise<string> {
    for (;;) {
      const end = /^\d{3} .*\r\n/m.exec(this.buffer);
      if (end) {
        const text = this.buffer.slice(0, end.index + end[0].length);
        this.buffer = this.buffer.slice(text.length);
        return text;
      }
      await new Promise<void>((wake) => (this.wake = wake));
    }
  }

  cmd(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }

  close(): void {
    this.socket.destroy();
  }
}

/** AUTH SCRAM-SHA-256-PLUS on `dialog`, the client binding to `binding`; returns the last reply. */
async function authPlus(dialog: TlsDialog, binding: Buffer | null): Promise<string> {
  const client = new ScramSha256Client({ username: USER.address, password: USER.password }, {}, { plus: true, data: () => binding });
  let reply = await dialog.cmd(`AUTH SCRAM-SHA-256-PLUS ${client.initial().toString("base64")}`);
  while (reply.startsWith("334 ")) {
    reply = await dialog.cmd(client.respond(Buffer.from(reply.slice(4).trim(), "base64")).toString("base64"));
  }
  return reply;
}

describe("SCRAM-SHA-256-PLUS (tls-exporter) on the real server", () => {
  let pg: Postern;
  before(async () => {
    pg = await startPostern({ users: [USER, { address: "jane@example.org", password: "x" }] });
  });
  after(() => pg.cleanup());

  for (const tls of ["implicit", "starttls"] as const) {
    it(`postern send --auth SCRAM-SHA-256-PLUS over ${tls} (TLS 1.3) authenticates and delivers`, async () => {
      const port = tls === "implicit" ? pg.ports.submissions : pg.ports.submission;
      const r = await send(
        ["--server", `127.0.0.1:${port}`, "--tls", tls, "--insecure", "--ehlo", "client.test"].concat([
          "--from",
          USER.address,
          "--to",
          "jane@example.org",
          "--user",
          USER.address,
          "--auth",
          "SCRAM-SHA-256-PLUS",
          "--subject",
          `plus ${tls}`,
        ]),
      );
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /AUTH SCRAM-SHA-256-PLUS/);
      assert.match(r.stdout, /<- 235 2\.7\.0/);
      await pg.waitForLog((l) => l.event === "auth-success" && l.mechanism === "SCRAM-SHA-256-PLUS" && l.user === USER.address);
    });
  }

  for (const starttls of [false, true]) {
    const where = starttls ? "STARTTLS" : "implicit TLS";
    it(`${where}, TLS 1.3: -PLUS is offered; a client-final bound to another TLS connection (a relay) gets 535`, async () => {
      const port = starttls ? pg.ports.submission : pg.ports.submissions;
      const victim = await TlsDialog.open(port, { starttls, maxVersion: "TLSv1.3" });
      const relay = await TlsDialog.open(port, { starttls, maxVersion: "TLSv1.3" });
      try {
        assert.equal(victim.dialog.socket.getProtocol(), "TLSv1.3");
        assert.match(victim.ehlo, /^250[ -]AUTH SCRAM-SHA-256-PLUS SCRAM-SHA-256 /m);
        const bindingFailures = () => pg.logs.filter((l) => l.event === "auth-failure" && l.reason === "channel-binding").length;
        const before = bindingFailures();
        const otherBinding = tlsExporterBinding(relay.dialog.socket)!;
        assert.match(await authPlus(victim.dialog, otherBinding), /^535 5\.7\.8 /);
        await pg.waitForLog(() => bindingFailures() > before);
        // The same exchange bound to its own connection succeeds: the binding alone made the difference.
        assert.match(await authPlus(relay.dialog, otherBinding), /^235 2\.7\.0 /);
      } finally {
        victim.dialog.close();
        relay.dialog.close();
      }
    });
  }

  it("TLS 1.3: plain SCRAM-SHA-256 with gs2 flag y (downgrade) is refused; n is accepted", async () => {
    const { dialog } = await TlsDialog.open(pg.ports.submissions, { starttls: false, maxVersion: "TLSv1.3" });
    try {
      const y = new ScramSha256Client({ username: USER.address, password: USER.password }, {}, { plus: false, data: () => tlsExporterBinding(dialog.socket) });
      const first = y.initial();
      assert.match(first.toString(), /^y,,/);
      assert.match(await dialog.cmd(`AUTH SCRAM-SHA-256 ${first.toString("base64")}`), /^535 5\.7\.8 /);
      const n = new ScramSha256Client({ username: USER.address, password: USER.password });
      let reply = await dialog.cmd(`AUTH SCRAM-SHA-256 ${n.initial().toString("base64")}`);
      while (reply.startsWith("334 ")) reply = await dialog.cmd(n.respond(Buffer.from(reply.slice(4).trim(), "base64")).toString("base64"));
      assert.match(reply, /^235 /);
    } finally {
      dialog.close();
    }
  });

  for (const starttls of [false, true]) {
    it(`${starttls ? "STARTTLS" : "implicit TLS"}, TLS 1.2: EHLO does not offer -PLUS, AUTH with it is 504, y is honest`, async () => {
      const { dialog, ehlo } = await TlsDialog.open(starttls ? pg.ports.submission : pg.ports.submissions, { starttls, maxVersion: "TLSv1.2" });
      try {
        assert.equal(dialog.socket.getProtocol(), "TLSv1.2");
        assert.match(ehlo, /^250[ -]AUTH SCRAM-SHA-256 /m);
        assert.doesNotMatch(ehlo, /-PLUS/);
        assert.match(await dialog.cmd("AUTH SCRAM-SHA-256-PLUS"), /^504 5\.5\.4 /);
        const y = Buffer.from(`y,,n=${USER.address},r=abcdefghijkl`).toString("base64");
        assert.match(await dialog.cmd(`AUTH SCRAM-SHA-256 ${y}`), /^334 /, "not offered here: y is accepted");
        assert.match(await dialog.cmd("*"), /^501 /);
      } finally {
        dialog.close();
      }
    });
  }
});
