/**
 * The parts of client autoconfiguration one by one: the XML escape, address checks, the
 * Autodiscover request reader, the OAuth2 variant of the Thunderbird answer, the Apple profile
 * without a mailbox server, and profile signing ("chains to a public root?", the CMS signature).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { pino } from "pino";
import { parseConfigObject } from "../../src/config/load.js";
import { createAutoconfigApp } from "../../src/web/autoconfig.js";
import { clientSettingsOf, ourAddress, type ClientSettings } from "../../src/web/autoconfig-settings.js";
import { emailAddressOfAutodiscoverRequest } from "../../src/web/autoconfig-autodiscover.js";
import { chainsToPublicRoot, mobileconfigAnswer, profileSignerFor } from "../../src/web/autoconfig-mobileconfig.js";
import { thunderbirdConfig } from "../../src/web/autoconfig-thunderbird.js";
import { startWebServer } from "../../src/web/listener.js";
import { escapeXml } from "../../src/web/xml-escape.js";
import { makeSelfSigned } from "../helpers/self-signed.js";
import { makeTestCa, type TestCa } from "../helpers/test-ca.js";
import { blocks, httpsRequest, texts } from "./helpers/autoconfig-client.js";

const run = promisify(execFile);
const silent = pino({ level: "silent" });

const settings = (over: Partial<ClientSettings> = {}): ClientSettings => ({
  hostname: "mail.example.org",
  domains: ["example.org"],
  submission: [
    { port: 465, socketType: "SSL" },
    { port: 587, socketType: "STARTTLS" },
  ],
  incoming: [],
  ...over,
});

describe("escapeXml", () => {
  it("escapes the five XML specials and refuses what XML cannot carry", () => {
    assert.equal(escapeXml(`<a href="x">'&'</a>`), "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;");
    assert.equal(escapeXml(465), "465");
    assert.equal(escapeXml("tab\there, é, 🙂"), "tab\there, é, 🙂");
    for (const bad of ["\u0000", "a\u001bb", "\uFFFE", "\uD800", "x\uDC00"]) assert.throws(() => escapeXml(bad), JSON.stringify(bad));
  });
});

describe("address checks", () => {
  const domains = ["example.org", "example.net"];
  it("accepts one address of our domains, any case, and lower-cases the domain", () => {
    assert.deepEqual(ourAddress("Alice.B+tag@Example.NET", domains), { address: "Alice.B+tag@example.net", domain: "example.net" });
    assert.deepEqual(ourAddress("o'&x@example.org", domains), { address: "o'&x@example.org", domain: "example.org" });
  });
  it("refuses other domains, several @, markup, quotes, spaces and over-long parts", () => {
    for (const bad of [
      "a@evil.test",
      "a@example.org.evil.test",
      "a@b@example.org",
      "a<b>@example.org",
      '"a b"@example.org',
      "a b@example.org",
      "a..b@example.org",
      ".a@example.org",
      "a@example.org ",
      "a@-example.org",
      `${"x".repeat(65)}@example.org`,
      `a@${"x".repeat(250)}.org`,
      "",
      null,
    ])
      assert.equal(ourAddress(bad, domains), undefined, String(bad));
  });
});

describe("Autodiscover request reader", () => {
  it("takes the one EMailAddress, with or without a namespace prefix", () => {
    assert.equal(emailAddressOfAutodiscoverRequest("<Request><EMailAddress> a@example.org </EMailAddress></Request>"), "a@example.org");
    assert.equal(emailAddressOfAutodiscoverRequest('<x:Autodiscover xmlns:x="…"><x:EMailAddress>a@example.org</x:EMailAddress>'), "a@example.org");
  });
  it("gives nothing for none, several, nested markup or an over-long value", () => {
    assert.equal(emailAddressOfAutodiscoverRequest("<Request></Request>"), undefined);
    assert.equal(emailAddressOfAutodiscoverRequest("<EMailAddress>a@x</EMailAddress><EMailAddress>b@x</EMailAddress>"), undefined);
    assert.equal(emailAddressOfAutodiscoverRequest("<EMailAddress><![CDATA[a@x]]></EMailAddress>"), undefined);
    assert.equal(emailAddressOfAutodiscoverRequest(`<EMailAddress>${"a".repeat(400)}@x</EMailAddress>`), undefined);
  });
});

describe("Thunderbird answer with auth.oauth", () => {
  it("lists OAuth2 after password-cleartext and names the issuer", () => {
    const config = parseConfigObject(
      {
        hostname: "mail.example.org",
        domains: ["Example.org"],
        listeners: [
          { port: 587, mode: "submission" },
          { port: 25, mode: "mta" },
        ],
        auth: { oauth: { issuer: "https://login.example.org/realms/mail", audience: "smtp", scope: "smtp" } },
        web: { port: 8443, hostname: "smtp.example.org" },
      },
      "/tmp",
    );
    const s = clientSettingsOf(config, [
      { mode: "mta", port: 25 },
      { mode: "submission", port: 587 },
    ]);
    assert.deepEqual(s.submission, [{ port: 587, socketType: "STARTTLS" }]);
    const xml = thunderbirdConfig(s, "example.org");
    const [server] = blocks(xml, "outgoingServer");
    assert.deepEqual(texts(server!.inner, "hostname"), ["smtp.example.org"]);
    assert.deepEqual(texts(server!.inner, "authentication"), ["password-cleartext", "OAuth2"]);
    assert.deepEqual(texts(xml, "issuer"), ["login.example.org"]);
    assert.deepEqual(texts(xml, "scope"), ["smtp"]);
  });
});

describe("Apple profile", () => {
  let dir: string;
  let ca: TestCa;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-mobileconfig-"));
    ca = await makeTestCa(join(dir, "ca"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("is refused with the reason when no incoming server is configured", async () => {
    const a = await mobileconfigAnswer(settings(), "a@example.org");
    assert.equal(a.kind, "none");
    const leaf = await ca.issue({ names: ["mail.example.org"] });
    const web = await startWebServer(
      { address: "127.0.0.1", port: 0, tls: { cert: Buffer.from(leaf.certPem), key: Buffer.from(leaf.keyPem) } },
      [createAutoconfigApp(() => settings(), silent)],
      silent,
    );
    try {
      const r = await httpsRequest(web.port, { path: "/apple/mobileconfig?emailaddress=a%40example.org", ca: ca.certPem });
      assert.equal(r.status, 404);
      assert.equal(r.text, "no incoming mail server is configured (web.incoming): Apple mail profiles need one\n");
    } finally {
      await web.close();
    }
  });

  it("chains to a public root? not for a test CA, a self-signed or an expired certificate", async () => {
    const leaf = await ca.issue({ names: ["mail.example.org"] });
    const root = new X509Certificate(ca.certPem);
    assert.equal(chainsToPublicRoot(leaf.certPem), false);
    assert.equal(chainsToPublicRoot(leaf.certPem, [root]), true);
    const mid = await ca.intermediate("Postern Test Intermediate");
    const viaMid = await mid.issue({ names: ["mail.example.org"] });
    assert.equal(chainsToPublicRoot(viaMid.certPem, [root]), true);
    assert.equal(chainsToPublicRoot(viaMid.leafPem, [root]), false, "the intermediate is missing");
    const expired = await ca.issue({
      names: ["mail.example.org"],
      notBefore: new Date(Date.now() - 10 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    assert.equal(chainsToPublicRoot(expired.certPem, [root]), false);
    const self = { cert: join(dir, "self.pem"), key: join(dir, "self.key") };
    await makeSelfSigned({ cn: "mail.example.org", ...self });
    const { readFile } = await import("node:fs/promises");
    assert.equal(chainsToPublicRoot(await readFile(self.cert)), false);
    assert.equal(profileSignerFor(Buffer.from(leaf.certPem), Buffer.from(leaf.keyPem)), undefined, "no signer for a private CA");
  });

  it("signed (when the chain is trusted): CMS SignedData over the profile, verifiable against the root", async () => {
    const leaf = await ca.issue({ names: ["mail.example.org"] });
    const signer = profileSignerFor(Buffer.from(leaf.certPem), Buffer.from(leaf.keyPem), [new X509Certificate(ca.certPem)]);
    assert.ok(signer);
    const a = await mobileconfigAnswer(
      settings({ incoming: [{ type: "imap", host: "imap.example.org", port: 993, socketType: "SSL" }] }),
      "a@example.org",
      signer,
    );
    assert.equal(a.kind, "profile");
    if (a.kind !== "profile") return;
    assert.equal(a.signed, true);
    assert.equal(a.body[0], 0x30, "DER");
    const signed = join(dir, "signed.der");
    await writeFile(signed, a.body);
    const { stdout } = await run("openssl", ["smime", "-verify", "-inform", "der", "-in", signed, "-CAfile", ca.certFile, "-purpose", "any"]);
    assert.match(stdout, /<key>EmailAddress<\/key>\s*<string>a@example\.org<\/string>/);
  });
});
