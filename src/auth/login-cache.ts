// Recent successful password checks, so that a user who logged in a moment ago does not pay (nor wait for)
// scrypt again. No password is kept: an entry is an HMAC, under a key made at start and never stored, of
// the stored hash and the password. A changed hash (a new password, a reloaded file) no longer matches.
import { Buffer } from 'node:buffer';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export class LoginCache {
  private readonly key = randomBytes(32);
  /** user name → digest and expiry; Map order is least recently stored first. */
  private readonly entries = new Map<string, { digest: Buffer; expires: number }>();

  constructor(
    /** ms an entry is trusted; 0 turns the cache off. */
    private readonly ttl: number,
    private readonly maxEntries: number,
    private readonly now: () => number,
  ) {}

  private digest(hash: string, password: Buffer): Buffer {
    return createHmac('sha256', this.key).update(hash).update('\0').update(password).digest();
  }

  /** True when `password` matched `hash` (the user's current stored hash) within the TTL. */
  has(username: string, hash: string, password: Buffer): boolean {
    const e = this.entries.get(username);
    if (!e) return false;
    if (e.expires <= this.now()) {
      this.entries.delete(username);
      return false;
    }
    return timingSafeEqual(e.digest, this.digest(hash, password));
  }

  add(username: string, hash: string, password: Buffer): void {
    if (this.ttl <= 0) return;
    this.entries.delete(username);
    this.entries.set(username, { digest: this.digest(hash, password), expires: this.now() + this.ttl });
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  forget(usernames: Iterable<string>): void {
    for (const u of usernames) this.entries.delete(u);
  }

  get size(): number {
    return this.entries.size;
  }
}
