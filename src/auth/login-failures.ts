// Failed logins counted per source address, per user name and per (address, user name), fail2ban style:
// N failures within a window ban the (address, user name) pair, or the whole address, for a while. A user
// name is never banned by itself (that would let anyone lock a user out); failures on it only slow its checks.

export interface FailureLimits {
  /** Failed logins of one user name from one address within `window` that ban that pair. */
  maxFailures: number;
  /** Failed logins from one address (any user names) within `window` that ban the address. */
  maxAddressFailures: number;
  /** ms */
  window: number;
  /** ms */
  banTime: number;
  /** Addresses (and pairs) tracked at most; the oldest are forgotten beyond it so that memory stays bounded. */
  maxTracked: number;
}

export interface Ban {
  kind: 'address' | 'address and username';
  address: string;
  username?: string;
  failures: number;
  /** ms */
  banTime: number;
}

interface Counter {
  count: number;
  since: number;
  bannedUntil: number;
}

export class FailureTracker {
  private readonly pairs = new Map<string, Counter>();
  private readonly addresses = new Map<string, Counter>();
  private readonly usernames = new Map<string, Counter>();

  constructor(
    private readonly limits: FailureLimits,
    private readonly now: () => number,
    /** Called once when a ban starts (not for each refusal during it). */
    private readonly onBan: (ban: Ban) => void,
  ) {}

  /** Records a failed login; may start a ban. */
  failed(address: string, username: string): void {
    const now = this.now();
    const { maxFailures, maxAddressFailures, banTime } = this.limits;
    const pair = this.hit(this.pairs, pairKey(address, username), now);
    if (pair.count >= maxFailures && pair.bannedUntil <= now) {
      pair.bannedUntil = now + banTime;
      this.onBan({ kind: 'address and username', address, username, failures: pair.count, banTime });
      pair.count = 0;
    }
    const addr = this.hit(this.addresses, address, now);
    if (addr.count >= maxAddressFailures && addr.bannedUntil <= now) {
      addr.bannedUntil = now + banTime;
      this.onBan({ kind: 'address', address, failures: addr.count, banTime });
      addr.count = 0;
    }
    this.hit(this.usernames, username, now);
  }

  /** A successful login clears its pair's count (a mistyped password followed by the right one). */
  succeeded(address: string, username: string): void {
    const key = pairKey(address, username);
    const pair = this.pairs.get(key);
    if (pair && pair.bannedUntil <= this.now()) this.pairs.delete(key);
  }

  pairBanned(address: string, username: string): boolean {
    return (this.pairs.get(pairKey(address, username))?.bannedUntil ?? 0) > this.now();
  }

  addressBanned(address: string): boolean {
    return (this.addresses.get(address)?.bannedUntil ?? 0) > this.now();
  }

  /** The address failed within the window (its checks lose priority). */
  addressSuspect(address: string): boolean {
    return this.recent(this.addresses.get(address));
  }

  /** The user name failed within the window (its checks run one at a time). */
  usernameSuspect(username: string): boolean {
    return this.recent(this.usernames.get(username));
  }

  /** Entries tracked (for tests and the memory bound). */
  get tracked(): number {
    return this.pairs.size + this.addresses.size + this.usernames.size;
  }

  private recent(c: Counter | undefined): boolean {
    if (!c) return false;
    const now = this.now();
    return c.bannedUntil > now || (c.count > 0 && now - c.since <= this.limits.window);
  }

  private hit(map: Map<string, Counter>, key: string, now: number): Counter {
    let c = map.get(key);
    if (c) map.delete(key); // re-inserted last: the Map's order is least recently failed first
    else c = { count: 0, since: now, bannedUntil: 0 };
    if (now - c.since > this.limits.window) {
      c.count = 0;
      c.since = now;
    }
    if (c.count === 0) c.since = now;
    c.count++;
    map.set(key, c);
    if (map.size > this.limits.maxTracked) map.delete(map.keys().next().value!);
    return c;
  }
}

const pairKey = (address: string, username: string): string => `${address}\0${username}`;
