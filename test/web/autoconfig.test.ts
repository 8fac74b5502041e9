/**
 * Client autoconfiguration against the real `postern serve` (web: on an ephemeral loopback port,
 * the server's certificate from a test CA): Thunderbird's autoconfig, Autodiscover POX and the
 * Apple profile, field by field, with the ports of the listeners really bound; addresses of other
 * domains and hostile addresses; and a client (nodemailer) configured from the answer alone sends.
 */
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import nodemailer from "nodemailer";
import { makeTestCa, type TestCa } from "../helpers/test-ca.js";
import { startPostern, type Postern } from "../e2e/helpers/postern.js";
import { blocks, httpsRequest, one, parsePlist, texts, type Plist } from "./helpers/autoconfig-client.js";

const PASSWORD = "correct horse battery staple";

describe("client autoconfiguration (real server)", () => {
  let server: Postern;
  let ca: TestCa;
  let webPort: number;

  before(async () => {
    const { mkdtemp } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    ca = await makeTestCa(await mkdtemp(join(tmpdir(), "postern-autoconfig-ca-")));
    const leaf = await ca.issue({ names: ["mail.example.org", "autoconfig.example.org", "mta-sts.example.org"] });
    server = await startPostern({
      config: {
        tls: { cert: leaf.certFile, key: leaf.keyFile },
        web: { address: "127.0.0.1", port: 0, incoming: { imaps: "imap.example.org:993", pop3: "pop.example.org:110" }, mtaSts: { mode: "enforce" } },
      },
      users: [{ address: "alice@example.org", password: PASSWORD }],
    });
    webPort = (await server.waitForLog((l) => l.event === "web-listening")).port as number;
  });
  after(async () => {
    await server?.cleanup();
  });

  const get = (path: string, o: { method?: string; body?: string; headers?: Record<string, string> } = {}) =>
    httpsRequest(webPort, { path, ca: ca.certPem, ...o });

  it("Thunderbird: the submission listeners the server really has, implicit TLS first", async () => {
    for (const path of ["/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"]) {
      const r = await get(`${path}?emailaddress=${encodeURIComponent("Alice@Example.ORG")}`);
      assert.equal(r.status, 200);
      assert.equal(r.headers["content-type"], "application/xml; charset=utf-8");
      assert.equal(r.headers["x-content-type-options"], "nosniff");
      const [config] = blocks(r.text, "clientConfig");
      assert.equal(config!.attrs.version, "1.1");
      const [provider] = blocks(r.text, "emailProvider");
      assert.equal(provider!.attrs.id, "example.org");
      assert.equal(one(r.text, "domain"), "example.org");
      const outgoing = blocks(r.text, "outgoingServer");
      assert.deepEqual(
        outgoing.map((o) => ({
          type: o.attrs.type,
          hostname: one(o.inner, "hostname"),
          port: Number(one(o.inner, "port")),
          socketType: one(o.inner, "socketType"),
          username: one(o.inner, "username"),
          authentication: texts(o.inner, "authentication"),
        })),
        [
          {
            type: "smtp",
            hostname: "mail.example.org",
            port: server.ports.submissions,
            socketType: "SSL",
            username: "%EMAILADDRESS%",
            authentication: ["password-cleartext"],
          },
          {
            type: "smtp",
            hostname: "mail.example.org",
            port: server.ports.submission,
            socketType: "STARTTLS",
            username: "%EMAILADDRESS%",
            authentication: ["password-cleartext"],
          },
        ],
      );
      // Port 25 is for other MTAs: never offered to clients.
      assert.ok(!r.text.includes(`<port>${server.ports.mta}</port>`));
      const incoming = blocks(r.text, "incomingServer");
      assert.deepEqual(
        incoming.map((i) => [i.attrs.type, one(i.inner, "hostname"), one(i.inner, "port"), one(i.inner, "socketType"), one(i.inner, "username")]),
        [
          ["imap", "imap.example.org", "993", "SSL", "%EMAILADDRESS%"],
          ["pop3", "pop.example.org", "110", "STARTTLS", "%EMAILADDRESS%"],
        ],
      );
      assert.ok(!r.text.includes("oAuth2"), "no OAuth2 without auth.oauth");
    }
  });

  it("Thunderbird: autoconfig.DOMAIN without an address answers for that domain, a foreign host gets 404", async () => {
    const r = await get("/mail/config-v1.1.xml", { headers: { host: "autoconfig.EXAMPLE.org" } });
    assert.equal(r.status, 200);
    assert.equal(blocks(r.text, "emailProvider")[0]!.attrs.id, "example.org");
    const foreign = await get("/mail/config-v1.1.xml", { headers: { host: "autoconfig.evil.test" } });
    assert.equal(foreign.status, 404);
    assert.ok(!foreign.text.includes("evil"));
  });

  it("an address of another domain gets a fixed 404, nothing of it echoed", async () => {
    for (const path of ["/.well-known/autoconfig/mail/config-v1.1.xml", "/apple/mobileconfig"]) {
      const r = await get(`${path}?emailaddress=${encodeURIComponent("bob@evil.test")}`);
      assert.equal(r.status, 404);
      assert.equal(r.text, "no configuration for that address\n");
      assert.equal(r.headers["content-type"], "text/plain; charset=utf-8");
    }
    const ad = await get("/autodiscover/autodiscover.xml", { method: "POST", body: autodiscoverRequest("bob@evil.test") });
    assert.equal(ad.status, 404);
    assert.ok(!ad.text.includes("evil"));
  });

  it("hostile addresses: markup is refused, XML specials in a valid address are escaped", async () => {
    for (const bad of ["a<b>@example.org", 'x"y@example.org', "a@b@example.org", "@example.org", `${"a".repeat(65)}@example.org`, "a@example.org<x/>", ""]) {
      const r = await get(`/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=${encodeURIComponent(bad)}`);
      assert.equal(r.status, 404, bad);
      assert.ok(!r.text.includes("<"), bad);
    }
    // ' and & are atext (RFC 5322 §3.2.3): a valid address, which Autodiscover echoes escaped.
    const r = await get("/autodiscover/autodiscover.xml", { method: "POST", body: autodiscoverRequest("o'&x@example.org") });
    assert.equal(r.status, 200);
    assert.deepEqual(texts(r.text, "LoginName").slice(0, 1), ["o&apos;&amp;x@example.org"]);
    assert.ok(!r.text.includes("o'&x"));
    // An entity is not expanded: "&xxe;" is not an address.
    const xxe = `<?xml version="1.0"?><!DOCTYPE a [<!ENTITY xxe "alice@example.org">]>${autodiscoverRequest("&xxe;")}`;
    assert.equal((await get("/autodiscover/autodiscover.xml", { method: "POST", body: xxe })).status, 404);
    // Two addresses: which one? Neither.
    const two = autodiscoverRequest("alice@example.org").replace("</Request>", "<EMailAddress>bob@example.org</EMailAddress></Request>");
    assert.equal((await get("/autodiscover/autodiscover.xml", { method: "POST", body: two })).status, 404);
  });

  it("Autodiscover POX: response schema, one Protocol per server, ports of the real listeners", async () => {
    for (const path of ["/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"]) {
      const r = await get(path, { method: "POST", body: autodiscoverRequest("alice@example.org"), headers: { "content-type": "text/xml" } });
      assert.equal(r.status, 200);
      assert.match(
        r.text,
        /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<Autodiscover xmlns="http:\/\/schemas\.microsoft\.com\/exchange\/autodiscover\/responseschema\/2006">/,
      );
      assert.match(r.text, /<Response xmlns="http:\/\/schemas\.microsoft\.com\/exchange\/autodiscover\/outlook\/responseschema\/2006a">/);
      assert.equal(one(r.text, "AccountType"), "email");
      assert.equal(one(r.text, "Action"), "settings");
      const protocols = blocks(r.text, "Protocol").map((p) => ({
        type: one(p.inner, "Type"),
        server: one(p.inner, "Server"),
        port: Number(one(p.inner, "Port")),
        ssl: one(p.inner, "SSL"),
        spa: one(p.inner, "SPA"),
        encryption: one(p.inner, "Encryption"),
        login: one(p.inner, "LoginName"),
      }));
      assert.deepEqual(protocols, [
        { type: "IMAP", server: "imap.example.org", port: 993, ssl: "on", spa: "off", encryption: "SSL", login: "alice@example.org" },
        { type: "POP3", server: "pop.example.org", port: 110, ssl: "on", spa: "off", encryption: "TLS", login: "alice@example.org" },
        { type: "SMTP", server: "mail.example.org", port: server.ports.submissions, ssl: "on", spa: "off", encryption: "SSL", login: "alice@example.org" },
        { type: "SMTP", server: "mail.example.org", port: server.ports.submission, ssl: "on", spa: "off", encryption: "TLS", login: "alice@example.org" },
      ]);
    }
    assert.equal((await get("/autodiscover/autodiscover.xml")).status, 405);
  });

  it("Apple profile: a well-formed plist with a com.apple.mail.managed payload", async () => {
    const r = await get(`/apple/mobileconfig?emailaddress=${encodeURIComponent("alice@example.org")}`);
    assert.equal(r.status, 200);
    assert.equal(r.headers["content-type"], "application/x-apple-aspen-config");
    assert.equal(r.headers["content-disposition"], 'attachment; filename="email-alice-example.org.mobileconfig"');
    // The test CA is no public root: unsigned (README says why).
    const plist = parsePlist(r.text) as Record<string, Plist>;
    assert.equal(plist.PayloadType, "Configuration");
    assert.equal(plist.PayloadVersion, 1);
    assert.match(String(plist.PayloadUUID), /^[0-9A-F]{8}-[0-9A-F]{4}-8[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/);
    const [payload, ...rest] = plist.PayloadContent as Record<string, Plist>[];
    assert.equal(rest.length, 0);
    assert.deepEqual(
      {
        type: payload!.PayloadType,
        account: payload!.EmailAccountType,
        address: payload!.EmailAddress,
        inHost: payload!.IncomingMailServerHostName,
        inPort: payload!.IncomingMailServerPortNumber,
        inSsl: payload!.IncomingMailServerUseSSL,
        inUser: payload!.IncomingMailServerUsername,
        outHost: payload!.OutgoingMailServerHostName,
        outPort: payload!.OutgoingMailServerPortNumber,
        outSsl: payload!.OutgoingMailServerUseSSL,
        outUser: payload!.OutgoingMailServerUsername,
        outAuth: payload!.OutgoingMailServerAuthentication,
      },
      {
        type: "com.apple.mail.managed",
        account: "EmailTypeIMAP",
        address: "alice@example.org",
        inHost: "imap.example.org",
        inPort: 993,
        inSsl: true,
        inUser: "alice@example.org",
        outHost: "mail.example.org",
        outPort: server.ports.submissions,
        outSsl: true,
        outUser: "alice@example.org",
        outAuth: "EmailAuthPassword",
      },
    );
    assert.notEqual(payload!.PayloadUUID, plist.PayloadUUID);
  });

  it("serves the MTA-STS policy on mta-sts.DOMAIN only", async () => {
    const r = await get("/.well-known/mta-sts.txt", { headers: { host: "mta-sts.example.org" } });
    assert.equal(r.status, 200);
    assert.equal(r.text, "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmax_age: 604800\r\n");
    assert.equal((await get("/.well-known/mta-sts.txt", { headers: { host: "mta-sts.evil.test" } })).status, 404);
    assert.equal((await get("/.well-known/mta-sts.txt")).status, 404);
  });

  it("a client configured from the autoconfig answer alone sends through each outgoing server", async () => {
    const address = "alice@example.org";
    const answer = await get(`/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=${encodeURIComponent(address)}`);
    const servers = blocks(answer.text, "outgoingServer");
    assert.equal(servers.length, 2);
    const ids: string[] = [];
    for (const [n, s] of servers.entries()) {
      const hostname = one(s.inner, "hostname");
      const socketType = one(s.inner, "socketType");
      const transport = nodemailer.createTransport({
        // The test machine's resolver does not know mail.example.org: loopback, with the answer's
        // name as the TLS server name, which the certificate must carry.
        host: "127.0.0.1",
        port: Number(one(s.inner, "port")),
        secure: socketType === "SSL",
        requireTLS: socketType === "STARTTLS",
        tls: { servername: hostname, ca: ca.certPem, rejectUnauthorized: true },
        auth: { user: one(s.inner, "username").replace("%EMAILADDRESS%", address), pass: PASSWORD },
      });
      const info = await transport.sendMail({ from: address, to: address, subject: `autoconfigured ${n}`, text: "hello\n" });
      transport.close();
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as /);
      assert.deepEqual(info.accepted, [address]);
      ids.push(info.response.split(" ").at(-1)!);
    }
    for (const id of ids) await server.waitForLog((l) => l.event === "delivered" && l.id === id && l.to === address);
    assert.equal((await readdir(join(server.dir, "mail/example.org/alice/new"))).length, 2);
  });
});

function autodiscoverRequest(address: string): string {
  return [
    '<?xml version="1.0" encoding="utf-8"?>',
    '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">',
    "<Request>",
    `<EMailAddress>${address}</EMailAddress>`,
    "<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>",
    "</Request>",
    "</Autodiscover>",
  ].join("\n");
}

describe("web listener with the generated self-signed certificate", () => {
  it("serves with the certificate the SMTP listeners use; no Apple profile without web.incoming", async () => {
    const server = await startPostern({ config: { web: { port: 0 } } });
    try {
      const webPort = (await server.waitForLog((l) => l.event === "web-listening")).port as number;
      const { readFile } = await import("node:fs/promises");
      const cert = await readFile(join(server.dir, "data/tls/selfsigned-cert.pem"), "utf8");
      const r = await httpsRequest(webPort, { path: "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=a%40example.org", ca: cert });
      assert.equal(r.status, 200);
      assert.equal(blocks(r.text, "incomingServer").length, 0);
      const apple = await httpsRequest(webPort, { path: "/apple/mobileconfig?emailaddress=a%40example.org", ca: cert });
      assert.equal(apple.status, 404);
      assert.match(apple.text, /web\.incoming/);
    } finally {
      await server.cleanup();
    }
  });
});
