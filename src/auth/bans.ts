// The ban list: Client IDs, usernames and addresses (IP or CIDR) refused at CONNECT with 0x8A (Banned).
import { AddressSet, checkAddressEntry, ipOf } from '../util/address.js';

export interface BanOptions {
  clientIds?: string[];
  usernames?: string[];
  /** IP addresses or CIDR blocks. */
  addresses?: string[];
}

export class BanList {
  private readonly clientIds: Set<string>;
  private readonly usernames: Set<string>;
  private addressList: string[];
  private addresses: AddressSet;

  constructor(options: BanOptions = {}) {
    this.clientIds = new Set(options.clientIds);
    this.usernames = new Set(options.usernames);
    this.addressList = [...(options.addresses ?? [])];
    this.addressList.forEach(checkAddressEntry);
    this.addresses = new AddressSet(this.addressList);
  }

  get size(): number {
    return this.clientIds.size + this.usernames.size + this.addressList.length;
  }

  /** Why `client` is banned ("client ID", "username", "address"), or undefined. */
  check(client: { clientId: string; username?: string; remoteAddress: string }): string | undefined {
    if (this.clientIds.has(client.clientId)) return 'client ID';
    if (client.username !== undefined && this.usernames.has(client.username)) return 'username';
    if (this.addressList.length && this.addresses.has(ipOf(client.remoteAddress))) return 'address';
    return undefined;
  }

  /** Every entry, as lists (for the HTTP API). */
  list(): Required<BanOptions> {
    return { clientIds: [...this.clientIds], usernames: [...this.usernames], addresses: [...this.addressList] };
  }

  add(entry: BanOptions): void {
    entry.clientIds?.forEach((c) => this.clientIds.add(c));
    entry.usernames?.forEach((u) => this.usernames.add(u));
    if (entry.addresses?.length) {
      entry.addresses.forEach(checkAddressEntry);
      // Banning an address again changes nothing (the list is rebuilt on every change: keep it short).
      const added = entry.addresses.filter((a) => !this.addressList.includes(a));
      if (added.length === 0) return;
      this.addressList.push(...added);
      this.addresses = new AddressSet(this.addressList);
    }
  }

  remove(entry: BanOptions): void {
    entry.clientIds?.forEach((c) => this.clientIds.delete(c));
    entry.usernames?.forEach((u) => this.usernames.delete(u));
    if (entry.addresses?.length) {
      this.addressList = this.addressList.filter((a) => !entry.addresses!.includes(a));
      this.addresses = new AddressSet(this.addressList);
    }
  }
}
