/**
 * Independent DKIM verifiers for the signing tests: mailauth's dkimVerify (Node) and dkimpy
 * (Debian's python3-dkim, run by /usr/bin/python3), both reading the public keys from DNS records
 * given as the zone lines `postern dkim dns` prints, served by the test DNS responder.
 */
import { execFile } from "node:child_process";
import { promises as dns } from "node:dns";
import { dkimVerify } from "mailauth";
import { startDnsServer, type DnsServer } from "../../delivery/helpers/dns-server.js";

/** `NAME. IN TXT "part" "part"` → name (no final dot, lower case) and the joined value. */
export function parseZoneLine(line: string): { name: string; value: string } {
  const m = /^(\S+)\s+IN\s+TXT\s+((?:"[^"]*"\s*)+)$/.exec(line.trim());
  if (!m) throw new Error(`not a TXT zone line: ${line}`);
  const parts = [...m[2]!.matchAll(/"([^"]*)"/g)].map((p) => p[1]!);
  if (parts.some((p) => Buffer.byteLength(p) > 255)) throw new Error(`a character-string over 255 octets: ${line}`);
  return { name: m[1]!.replace(/\.$/, "").toLowerCase(), value: parts.join("") };
}

/** A DNS responder answering TXT for the zone lines (more can be added through `add`). */
export async function dkimDns(lines: string[]): Promise<DnsServer & { add(lines: string[]): void; resolver: dns.Resolver }> {
  const server = await startDnsServer({});
  const add = (more: string[]) => {
    for (const line of more.filter((l) => l.trim() !== "")) {
      const { name, value } = parseZoneLine(line);
      server.zone[name] = { TXT: [...(server.zone[name]?.TXT ?? []), value] };
    }
  };
  add(lines);
  const resolver = new dns.Resolver({ timeout: 2000, tries: 1 });
  resolver.setServers([server.address]);
  return Object.assign(server, { add, resolver });
}

export interface Verdict {
  selector: string;
  algorithm: string;
  result: string;
}

/** mailauth: one verdict per signature, keys looked up through `resolver` (the test responder). */
export async function mailauthVerify(message: Buffer | NodeJS.ReadableStream, resolver: dns.Resolver): Promise<Verdict[]> {
  const res = await dkimVerify(
    message as Buffer,
    {
      resolver: async (name: string, type: string) => {
        if (type !== "TXT") throw Object.assign(new Error("no data"), { code: "ENODATA" });
        return resolver.resolveTxt(name);
      },
    } as never,
  );
  return res.results.map((r) => {
    const x = r as unknown as { selector: string; signingDomain: string; algo: string; status: { result: string } };
    return { selector: x.selector, algorithm: x.algo, result: x.status.result };
  });
}

const DKIMPY = `
import sys, json, dkim, dns.resolver
port = int(sys.argv[1])
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = port
def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    try:
        ans = r.resolve(n, "TXT", lifetime=timeout)
    except Exception:
        return None
    return b"".join(ans[0].strings)
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
sigs = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
out = []
for i in range(len(sigs)):
    tags = dkim.util.parse_tag_value(sigs[i])
    try:
        ok = d.verify(idx=i, dnsfunc=dnsfunc)
    except Exception as e:
        ok = False
    out.append({"selector": tags[b"s"].decode(), "algorithm": tags[b"a"].decode(), "result": "pass" if ok else "fail"})
print(json.dumps(out))
`;

/** dkimpy: one verdict per signature, keys queried from the DNS responder on `port`. */
export function dkimpyVerify(message: Buffer, port: number): Promise<Verdict[]> {
  return new Promise((resolve, reject) => {
    const child = execFile("/usr/bin/python3", ["-c", DKIMPY, String(port)], { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`dkimpy: ${stderr || String(err)}`));
      else resolve(JSON.parse(stdout) as Verdict[]);
    });
    child.stdin!.end(message);
  });
}
