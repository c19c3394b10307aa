// Client addresses: "ip:port" strings from transports, IP/CIDR matching for ACL rules and bans.
import { BlockList, isIP } from 'node:net';

/** The IP part of "1.2.3.4:5678" / "[::1]:5678" / "::1:5678" (IPv4-mapped IPv6 becomes IPv4). */
export function ipOf(remoteAddress: string): string {
  let ip = remoteAddress;
  if (ip.startsWith('[')) ip = ip.slice(1, ip.indexOf(']'));
  else if (isIP(ip) === 0) {
    const colon = ip.lastIndexOf(':');
    if (colon > 0) ip = ip.slice(0, colon);
  }
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/** "1.2.3.4:5678", "[::1]:5678" */
export function formatAddress(ip: string, port: number | string): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** A set of addresses and CIDR blocks ("10.0.0.0/8", "::1", "192.168.1.7"). */
export class AddressSet {
  private readonly list = new BlockList();
  readonly size: number;

  constructor(entries: readonly string[]) {
    for (const entry of entries) addEntry(this.list, entry);
    this.size = entries.length;
  }

  has(ip: string): boolean {
    const family = isIP(ip);
    if (family === 0) return false;
    return this.list.check(ip, family === 6 ? 'ipv6' : 'ipv4');
  }
}

/** Throws a one-line error for an entry that is neither an IP address nor a CIDR block. */
export function checkAddressEntry(entry: string): void {
  addEntry(new BlockList(), entry);
}

function addEntry(list: BlockList, entry: string): void {
  const slash = entry.indexOf('/');
  const ip = slash < 0 ? entry : entry.slice(0, slash);
  const family = isIP(ip);
  if (family === 0) throw new Error(`${JSON.stringify(entry)} is not an IP address or CIDR block`);
  const type = family === 6 ? 'ipv6' : 'ipv4';
  if (slash < 0) {
    list.addAddress(ip, type);
    return;
  }
  const bits = Number(entry.slice(slash + 1));
  if (!Number.isInteger(bits) || bits < 0 || bits > (family === 6 ? 128 : 32)) throw new Error(`${JSON.stringify(entry)} has an invalid prefix length`);
  list.addSubnet(ip, bits, type);
}
