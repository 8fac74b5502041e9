/** CIDR lists (mynetworks, limits.exempt) matched with node's BlockList. */
import { BlockList, isIP } from "node:net";

export class NetworkList {
  private readonly list = new BlockList();
  readonly size: number;

  constructor(cidrs: readonly string[]) {
    for (const entry of cidrs) {
      const [ip, bits] = entry.split("/") as [string, string | undefined];
      const family = isIP(ip) === 6 ? "ipv6" : "ipv4";
      if (bits === undefined) this.list.addAddress(ip, family);
      else this.list.addSubnet(ip, Number(bits), family);
    }
    this.size = cidrs.length;
  }

  contains(address: string): boolean {
    if (this.size === 0) return false;
    const ip = unmapIPv4(address);
    const family = isIP(ip);
    if (family === 0) return false;
    return this.list.check(ip, family === 6 ? "ipv6" : "ipv4");
  }
}

/** "::ffff:192.0.2.1" (an IPv4 client on a dual-stack socket) → "192.0.2.1". */
export function unmapIPv4(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}
