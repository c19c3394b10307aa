// Which nodes are in the cluster: each node refreshes a heartbeat key (`${p}:node:${name}`, with a TTL) and
// lists itself in `${p}:nodes`; every node looks at the list each heartbeat. A listed node whose heartbeat
// key expired is down (`node-down`: it crashed or lost Redis for longer than the timeout); a node that
// leaves on purpose removes both (no `node-down`: it published its wills itself). After Redis comes back
// (a restart empties it), nobody is declared down for one timeout while the nodes announce themselves again.
// A dead node's inbox is not deleted but given a TTL: the survivor that adopts its sessions replays what it
// holds, then deletes it (adoption.ts); a node that comes back under its name keeps its inbox (PERSIST).
import { EventEmitter } from 'node:events';
import type { RedisCaller } from './forwarder.js';

export interface MembershipOptions {
  prefix: string;
  self: string;
  heartbeatTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** Info stored with this node in `${p}:nodes`. */
  info: Record<string, unknown>;
}

export interface NodeView {
  name: string;
  alive: boolean;
  /** Time since its last heartbeat (ms), as its key's remaining TTL tells; 0 for this node. */
  heartbeatAgeMs: number | undefined;
}

/**
 * How long a dead node's inbox stays for the survivor that replays it (adoption.ts) before Redis drops it
 * (nobody adopts the sessions: no Redis session store, or the adopter died too).
 */
export const DEAD_INBOX_TTL_MS = 10 * 60_000;

interface MembershipEvents {
  'node-up': [name: string];
  'node-down': [name: string];
  'node-left': [name: string];
  /** This node's entry was gone from the list (Redis lost it, or the others took this node for dead): announce again. */
  rejoined: [];
}

export class Membership extends EventEmitter<MembershipEvents> {
  readonly self: string;
  private readonly alive = new Map<string, { ageMs: number; seenAt: number }>();
  private readonly reportedDown = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private graceUntil = 0;
  private beating = false;
  private ttlMs: number;
  private stopped = false;
  private beats = 0;

  constructor(
    private readonly redis: RedisCaller,
    private readonly options: MembershipOptions,
    private readonly onError: (err: Error) => void,
  ) {
    super();
    this.self = options.self;
    // The key expires one interval before the timeout, so a check every interval sees a death within it.
    this.ttlMs = Math.max(options.heartbeatIntervalMs * 2, options.heartbeatTimeoutMs - options.heartbeatIntervalMs);
  }

  private key(name: string): string {
    return `${this.options.prefix}:node:${name}`;
  }

  private inboxKey(name: string): string {
    return `${this.options.prefix}:inbox:${name}`;
  }

  private get listKey(): string {
    return `${this.options.prefix}:nodes`;
  }

  start(): void {
    this.timer = setInterval(() => void this.beat(), this.options.heartbeatIntervalMs);
    this.timer.unref();
  }

  /** Redis (re)connected: nobody is declared down for one timeout while nodes announce themselves again. */
  reconnected(now = Date.now()): void {
    this.graceUntil = now + this.options.heartbeatTimeoutMs;
  }

  /** Refreshes this node's heartbeat and looks at the others'. */
  async beat(): Promise<void> {
    if (this.beating || this.stopped) return;
    this.beating = true;
    try {
      const info = JSON.stringify({ ...this.options.info, heartbeatTimeoutMs: this.options.heartbeatTimeoutMs, ttlMs: this.ttlMs });
      await this.redis.call('SET', this.key(this.self), String(Date.now()), 'PX', this.ttlMs);
      const added = (await this.redis.call('HSET', this.listKey, this.self, info)) as number;
      // Listed anew (a start, or back after being taken for dead): its inbox is its own again, without a TTL.
      if (added === 1) await this.redis.call('PERSIST', this.inboxKey(this.self));
      if (added === 1 && this.beats > 0) this.emit('rejoined');
      this.beats++;
      const listed = (await this.redis.call('HGETALL', this.listKey)) as string[];
      const now = Date.now();
      const names: string[] = [];
      const ttls: number[] = [];
      for (let i = 0; i + 1 < listed.length; i += 2) {
        const name = listed[i]!;
        if (name === this.self) continue;
        names.push(name);
        let ttl = this.ttlMs;
        try {
          ttl = (JSON.parse(listed[i + 1]!) as { ttlMs?: number }).ttlMs ?? ttl;
        } catch {
          // an entry this version cannot read: assume our own TTL
        }
        ttls.push(ttl);
      }
      const pttls = await Promise.all(names.map((n) => this.redis.call('PTTL', this.key(n)) as Promise<number>));
      const listedNow = new Set(names);
      for (let i = 0; i < names.length; i++) {
        const name = names[i]!;
        const pttl = pttls[i]!;
        if (pttl > 0) {
          const wasAlive = this.alive.has(name);
          this.alive.set(name, { ageMs: Math.max(0, ttls[i]! - pttl), seenAt: now });
          this.reportedDown.delete(name);
          if (!wasAlive) this.emit('node-up', name);
        } else if (now >= this.graceUntil) {
          // Listed but its heartbeat expired: it died. Its entries go (any node may do it: idempotent), its
          // inbox waits for the adopter's replay. One key per command: on a Redis Cluster the keys live in
          // different slots (a DEL of both is CROSSSLOT).
          await this.redis.call('HDEL', this.listKey, name);
          await Promise.all([this.redis.call('DEL', `${this.options.prefix}:routes:${name}`), this.redis.call('PEXPIRE', this.inboxKey(name), DEAD_INBOX_TTL_MS)]);
          this.markDown(name);
        }
      }
      for (const name of [...this.alive.keys()]) {
        if (listedNow.has(name) || now < this.graceUntil) continue;
        // Gone from the list outside a Redis restart: it left (or died and was cleaned up by another node).
        this.markDown(name);
      }
    } catch (err) {
      this.onError(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.beating = false;
    }
  }

  private markDown(name: string): void {
    this.alive.delete(name);
    if (this.reportedDown.has(name)) return;
    this.reportedDown.add(name);
    this.emit('node-down', name);
  }

  /** A node announced it is leaving (pub/sub): it is gone without node-down. */
  left(name: string): void {
    if (name === this.self || !this.alive.delete(name)) return;
    this.reportedDown.add(name);
    this.emit('node-left', name);
  }

  /** Every live node, this one included. */
  nodes(): string[] {
    return [this.self, ...this.alive.keys()];
  }

  isAlive(name: string): boolean {
    return name === this.self || this.alive.has(name);
  }

  view(): NodeView[] {
    const now = Date.now();
    return [
      { name: this.self, alive: true, heartbeatAgeMs: 0 },
      ...[...this.alive].map(([name, a]) => ({ name, alive: true, heartbeatAgeMs: a.ageMs + (now - a.seenAt) })),
    ];
  }

  /** Stops the heartbeat; `leave`: removes this node from Redis (a clean shutdown, not a death). */
  async stop(leave: boolean): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    if (!leave) return;
    await this.redis.call('HDEL', this.listKey, this.self);
    await Promise.all([this.redis.call('DEL', this.key(this.self)), this.redis.call('DEL', `${this.options.prefix}:routes:${this.self}`)]);
  }
}
