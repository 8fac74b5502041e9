/**
 * The transport table (parsing, lookup order, defaults) and aliases (file, catch-all, +detail,
 * forwarding, loops, reload on change).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, writeFile, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseTransport, TransportTable } from "../../src/delivery/transport.js";
import { AliasResolver, parseAliasFile } from "../../src/delivery/aliases.js";
import { configSchema } from "../../src/config/schema.js";

test("transport values parse into routes; bad ones say what is wrong", () => {
  assert.deepEqual(parseTransport("mx"), { kind: "mx" });
  assert.deepEqual(parseTransport("mx tls=must verify=yes"), { kind: "mx", tls: "must", verify: true });
  assert.deepEqual(parseTransport("smarthost relay.example:587 tls=must"), { kind: "smarthost", host: "relay.example", port: 587, tls: "must" });
  assert.deepEqual(parseTransport("smarthost [2001:db8::1]:25"), { kind: "smarthost", host: "2001:db8::1", port: 25 });
  assert.deepEqual(parseTransport("lmtp unix:/run/dovecot/lmtp"), { kind: "lmtp", path: "/run/dovecot/lmtp" });
  assert.deepEqual(parseTransport("lmtp 127.0.0.1:24"), { kind: "lmtp", host: "127.0.0.1", port: 24 });
  for (const kind of ["maildir", "discard", "reject"]) assert.deepEqual(parseTransport(kind), { kind });
  for (const [bad, why] of [
    ["uucp", /unknown transport/],
    ["smarthost relay.example", /host:port/],
    ["lmtp unix:relative", /absolute/],
    ["mx tls=sometimes", /tls=sometimes/],
    ["mx color=blue", /unknown option color/],
    ["discard now", /takes no arguments/],
  ] as const) {
    assert.throws(() => parseTransport(bad), why, bad);
  }
});

test("config: a bad transport value is refused at load time, naming the key", () => {
  const base = { hostname: "mx.example.org", domains: ["example.org"], listeners: [{ port: 0 }] };
  assert.ok(configSchema.safeParse({ ...base, transport: { "*": "mx", "far.test": "smarthost relay:25" } }).success);
  const bad = configSchema.safeParse({ ...base, transport: { "far.test": "smarthost" + " nowhere" } });
  assert.ok(!bad.success);
  assert.deepEqual(bad.error.issues[0]!.path, ["transport", "far.test"]);
});

test("lookup: exact domain, then .parent entries, then local → maildir, then *, then smarthost or MX", () => {
  const entries = TransportTable.parseEntries({
    "lists.example.org": "lmtp unix:/run/lists",
    ".corp.test": "smarthost gw.corp.test:25",
    "blocked.test": "reject",
  });
  const local = (d: string) => d === "example.org";
  const t = new TransportTable({ entries, isLocalDomain: local, hasSmarthost: false });
  assert.equal(t.lookup("lists.example.org").kind, "lmtp");
  assert.equal(t.lookup("example.org").kind, "maildir");
  assert.deepEqual(t.lookup("a.b.corp.test"), { kind: "smarthost", host: "gw.corp.test", port: 25 });
  assert.equal(t.lookup("corp.test").kind, "mx", ".corp.test covers subdomains only (as Postfix)");
  assert.equal(t.lookup("BLOCKED.test.").kind, "reject");
  assert.equal(t.lookup("elsewhere.test").kind, "mx", "no relayhost: MX");
  const withRelay = new TransportTable({ entries: {}, isLocalDomain: local, hasSmarthost: true });
  assert.equal(withRelay.lookup("elsewhere.test").kind, "smarthost", "relay.smarthost is the default route");
  const star = new TransportTable({ entries: TransportTable.parseEntries({ "*": "discard" }), isLocalDomain: local, hasSmarthost: true });
  assert.equal(star.lookup("elsewhere.test").kind, "discard");
  assert.equal(star.lookup("example.org").kind, "maildir", "* does not capture local domains");
});

test("alias file syntax: comments, several targets, refusal of pipes and files", () => {
  const map = parseAliasFile("# comment\nsales: ann, bob@example.net\n\n@example.org: catch\nPostmaster: root # trailing\n");
  assert.deepEqual(
    [...map],
    [
      ["sales", ["ann", "bob@example.net"]],
      ["@example.org", ["catch"]],
      ["postmaster", ["root"]],
    ],
  );
  assert.throws(() => parseAliasFile("x: |/bin/sh"), /line 1: target "\|\/bin\/sh" is not an address/);
  assert.throws(() => parseAliasFile("ok: a\nx: /etc/passwd"), /line 2/);
  assert.throws(() => parseAliasFile("nocolon"), /line 1/);
});

async function resolverWith(text: string, users: string[]): Promise<{ r: AliasResolver; file: string }> {
  const dir = await mkdtemp(join(tmpdir(), "postern-aliases-"));
  const file = join(dir, "aliases");
  await writeFile(file, text);
  const byLower = new Map(users.map((u) => [u.toLowerCase(), u]));
  const r = new AliasResolver({
    file,
    delimiter: "+",
    isLocalDomain: (d) => d === "example.org" || d === "example.com",
    mailbox: async (a) => byLower.get(a.toLowerCase()) ?? null,
  });
  return { r, file };
}

test("RCPT-time existence: users, +detail, aliases and catch-all exist; others do not", async () => {
  const { r } = await resolverWith("sales@example.org: john\nhelp: john\n@example.com: john@example.org\n", ["John@example.org"]);
  assert.equal(await r.exists("john@example.org"), "John@example.org", "a mailbox keeps the store's spelling");
  assert.equal(await r.exists("john+lists@example.org"), "john+lists@example.org", "+detail keeps the address given");
  assert.equal(await r.exists("sales@example.org"), "sales@example.org");
  assert.equal(await r.exists("help@example.org"), "help@example.org", "bare alias in every local domain");
  assert.equal(await r.exists("anything@example.com"), "anything@example.com", "catch-all");
  assert.equal(await r.exists("nobody@example.org"), null);
  assert.equal(await r.exists("nobody+x@example.org"), null);
  assert.equal(await r.exists("+x@example.org"), null, "a leading delimiter is not a detail");
});

test("delivery-time expansion: nested aliases, forwarding, self-reference, loops, catch-all", async () => {
  const { r } = await resolverWith(
    [
      "team@example.org: sales, ann@example.net",
      "sales@example.org: john, mary",
      "john@example.org: john, john@backup.test", // keep a copy and forward
      "a@example.org: b",
      "b@example.org: a",
      "@example.com: mary@example.org",
    ].join("\n"),
    ["john@example.org", "mary@example.org"],
  );
  assert.deepEqual(await r.expand("team@example.org"), {
    mailboxes: ["john@example.org", "mary@example.org"],
    remote: ["john@backup.test", "ann@example.net"],
  });
  assert.deepEqual(await r.expand("mary+news@example.org"), { mailboxes: ["mary@example.org"], remote: [] });
  assert.deepEqual(await r.expand("x@example.com"), { mailboxes: ["mary@example.org"], remote: [] });
  assert.equal(await r.expand("a@example.org"), null, "a loop with no mailbox delivers nowhere");
  assert.equal(await r.expand("ghost@example.org"), null);
});

test("the alias file is re-read when it changes; a broken edit keeps the last good table", async () => {
  const { r, file } = await resolverWith("old@example.org: john\n", ["john@example.org"]);
  assert.ok(await r.exists("old@example.org"));
  await writeFile(file, "new@example.org: john\n");
  await utimes(file, new Date(), new Date(Date.now() + 5000));
  assert.equal(await r.exists("old@example.org"), null);
  assert.ok(await r.exists("new@example.org"));
  await writeFile(file, "broken line without colon\n");
  await utimes(file, new Date(), new Date(Date.now() + 10_000));
  assert.ok(await r.exists("new@example.org"), "the last good table stays");
});

test("a cluster's aliases (the database) are asked with the file: the same key there wins, the file's others still apply", async () => {
  const { file } = await resolverWith("sales@example.org: john\nhelp: john\n", []);
  const users = new Map(["John@example.org", "Ann@example.org"].map((u) => [u.toLowerCase(), u]));
  const asked: string[][] = [];
  const shared = new Map([
    ["sales@example.org", ["ann"]],
    ["@example.com", ["ann@example.org"]],
  ]);
  const withShared = new AliasResolver({
    file,
    delimiter: "+",
    isLocalDomain: (d) => d === "example.org" || d === "example.com",
    mailbox: async (a) => users.get(a.toLowerCase()) ?? null,
    shared: async (keys) => {
      asked.push([...keys]);
      return new Map([...shared].filter(([k]) => keys.includes(k)));
    },
  });
  assert.deepEqual(await withShared.expand("sales@example.org"), { mailboxes: ["Ann@example.org"], remote: [] }, "the database's entry wins");
  assert.deepEqual(await withShared.expand("help@example.org"), { mailboxes: ["John@example.org"], remote: [] }, "the file's own entry");
  assert.equal(await withShared.exists("anyone@example.com"), "anyone@example.com", "a catch-all from the database");
  assert.deepEqual(asked[0], ["sales@example.org", "sales", "@example.org"], "one lookup per step: the step's keys and its catch-all");
});
