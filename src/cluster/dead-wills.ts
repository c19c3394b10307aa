// Wills of a node that dies. Each node records in Redis (`${p}:wills:${node}`, a hash Client ID → will) the
// will of every live connection and every will waiting out its Will Delay: a wrapper around the session store
// sees exactly what the core journals (SessionJournal.will, SessionStore.liveWill). When a node's heartbeat
// expires, one survivor takes its hash (SET NX lock) and publishes each will after its delay, counted from
// when the death was seen, unless the client connected again somewhere first (the owner of its Client ID,
// `${p}:client:${id}`, is then another node): HDEL decides who publishes, so each will goes out once.
import type { BrokerCore } from '../broker/core.js';
import type { ClientInfo } from '../broker/hooks.js';
import { createMessage } from '../broker/message.js';
import type { InflightMessage, QueuedMessage, SessionJournal, SessionStore, StoredSession, StoredWill, SubscriptionEntry } from '../broker/store/types.js';
import { decodeWill, encodeWill, type WillRecord } from './codec.js';
import { StateWarning, type ClusterContext, type NodeLiveness } from './types.js';

/** How long a survivor's claim of a dead node's wills stays locked beyond the longest will delay. */
const LOCK_MARGIN_MS = 60_000;

export class DeadWills {
  private readonly down: StateWarning;
  private readonly timers = new Set<NodeJS.Timeout>();
  private core: BrokerCore | undefined;
  /** What this node's hash should hold (clientId → encoded will): written again whole after an outage. */
  private readonly mirror = new Map<string, string>();
  /** Writes were missed (Redis unreachable): the hash is rewritten from the mirror when it is back. */
  private stale = false;
  /** Wills published for dead nodes (for tests and $SYS-like counters). */
  published = 0;
  readonly key: string;

  constructor(private readonly ctx: ClusterContext) {
    this.key = this.hashOf(ctx.node);
    this.down = new StateWarning(ctx.warn);
  }

  private hashOf(node: string): string {
    return `${this.ctx.prefix}:wills:${node}`;
  }

  /** The session store the core gets: `inner`, with the wills it is told of recorded here. */
  wrap(inner: SessionStore): SessionStore {
    return new WillRecordingStore(inner, this);
  }

  /** The will of `clientId` now (undefined: none any more). Written in call order on one connection. */
  record(clientId: string, will: StoredWill | undefined, sessionExpiry: number): void {
    const encoded = will === undefined ? undefined : encodeWill({ will: will.will, client: will.client, publishAt: will.publishAt, sessionExpiry });
    if (encoded === undefined) this.mirror.delete(clientId);
    else this.mirror.set(clientId, encoded);
    const redis = this.ctx.redis;
    if (redis.status !== 'ready' || this.stale) {
      this.stale = true;
      this.down.set('Redis unreachable: wills of this node are recorded for the survivors again when it is back');
      return;
    }
    const write = encoded === undefined ? redis.hdel(this.key, clientId) : redis.hset(this.key, clientId, encoded);
    write.catch((err: unknown) => {
      this.stale = true;
      this.down.set('will not recorded in Redis', { error: String(err) });
    });
  }

  /** Redis is back (or restarted empty): this node's hash is written again whole from what it should hold. */
  async resync(): Promise<void> {
    const multi = this.ctx.redis.multi().del(this.key);
    if (this.mirror.size > 0) multi.hset(this.key, Object.fromEntries(this.mirror));
    await multi.exec();
    this.stale = false;
    this.down.clear('Redis reachable again: wills of this node recorded again');
  }

  /** Starts watching the other nodes: `core` publishes the wills this node takes over. */
  start(core: BrokerCore, liveness: NodeLiveness): void {
    this.core = core;
    liveness.on('node-down', (name) => {
      if (name !== this.ctx.node) void this.takeOver(name).catch((err: unknown) => this.ctx.warn('wills of a dead node not taken over', { node: name, error: String(err) }));
    });
  }

  /** Node `name` died: if this node wins the lock, its wills are scheduled here. Resolves with how many. */
  async takeOver(name: string): Promise<number> {
    const redis = this.ctx.redis;
    const hash = this.hashOf(name);
    const all = await redis.hgetall(hash);
    const records = Object.entries(all).map(([clientId, text]) => [clientId, decodeWill(text)] as const);
    const seen = this.ctx.now();
    const due = records.map(([clientId, r]) => [clientId, r.publishAt ?? seen + Math.min(r.will.properties?.willDelayInterval ?? 0, r.sessionExpiry) * 1000] as const);
    const last = due.reduce((max, [, at]) => Math.max(max, at), seen);
    const won = await redis.set(`${hash}:lock`, this.ctx.node, 'PX', last - seen + LOCK_MARGIN_MS, 'NX');
    if (won === null) return 0;
    this.ctx.warn('node down: this node publishes its wills', { node: name, wills: due.length });
    for (const [clientId, at] of due) {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        void this.publishIfStillDead(name, clientId).catch((err: unknown) => this.ctx.warn('will of a dead node not published', { node: name, clientId, error: String(err) }));
      }, Math.max(0, at - this.ctx.now()));
      this.timers.add(timer);
    }
    return due.length;
  }

  /** The will is due: published unless the client is back on another node. HDEL makes it once. */
  private async publishIfStillDead(name: string, clientId: string): Promise<void> {
    const redis = this.ctx.redis;
    const hash = this.hashOf(name);
    const owner = await redis.get(`${this.ctx.prefix}:client:${clientId}`);
    const text = await redis.hget(hash, clientId);
    if (text === null || (await redis.hdel(hash, clientId)) !== 1) return; // published (or cancelled) already
    if (owner !== null && !owner.startsWith(`${name} `)) return; // it connected again elsewhere: [MQTT-3.1.3-9]
    const record = decodeWill(text);
    this.publish(record);
    if ((await redis.hlen(hash)) === 0) await redis.del(hash);
  }

  private publish(record: WillRecord): void {
    const core = this.core;
    if (core === undefined) return;
    const client: ClientInfo = record.client;
    const message = createMessage(record.will, client.clientId, core.clock.now());
    const authorize = core.hooks.authorizePublish;
    const go = (ok: unknown) => {
      if (ok !== true) {
        core.events.warning?.('will message of a dead node not authorized; dropped', { clientId: client.clientId, topic: message.topic });
        return;
      }
      this.published++;
      core.publish(message, client, true);
    };
    if (authorize === undefined) go(true);
    else void Promise.resolve(authorize(client, message)).then(go, () => go(false));
  }

  close(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }
}

/** A SessionStore that passes everything to `inner` and records wills. */
class WillRecordingStore implements SessionStore {
  constructor(
    private readonly inner: SessionStore,
    private readonly wills: DeadWills,
  ) {}

  get durable(): boolean {
    return this.inner.durable;
  }

  load(): Iterable<StoredSession> {
    return this.inner.load();
  }

  /** Asked only for sessions that outlive their connection: they get a journal here, to see their will. */
  journal(clientId: string): SessionJournal {
    return new WillRecordingJournal(clientId, this.inner.journal(clientId), this.wills);
  }

  afterCommit(done: () => void, failed?: (error: Error) => void): void {
    this.inner.afterCommit(done, failed);
  }

  liveWill(clientId: string, will: StoredWill | undefined): void {
    this.inner.liveWill?.(clientId, will);
    this.wills.record(clientId, will, 0);
  }

  close(): void {
    this.inner.close();
  }
}

class WillRecordingJournal implements SessionJournal {
  private expiryInterval = 0;
  readonly afterCommit?: (done: () => void) => void;

  constructor(
    private readonly clientId: string,
    private readonly inner: SessionJournal | undefined,
    private readonly wills: DeadWills,
  ) {
    if (inner?.afterCommit !== undefined) this.afterCommit = (done) => inner.afterCommit!(done);
  }

  expiry(expiryInterval: number, expiresAt: number | undefined, client?: ClientInfo): void {
    this.expiryInterval = expiryInterval;
    this.inner?.expiry(expiryInterval, expiresAt, client);
  }
  deleted(): void {
    this.inner?.deleted();
    this.wills.record(this.clientId, undefined, 0);
  }
  subscribed(key: string, entry: SubscriptionEntry): void {
    this.inner?.subscribed(key, entry);
  }
  unsubscribed(key: string): void {
    this.inner?.unsubscribed(key);
  }
  queued(item: QueuedMessage): void {
    this.inner?.queued(item);
  }
  dequeued(item: QueuedMessage): void {
    this.inner?.dequeued(item);
  }
  inflight(m: InflightMessage): void {
    this.inner?.inflight(m);
  }
  released(packetId: number): void {
    this.inner?.released(packetId);
  }
  incomingQos2(packetId: number, held: boolean): void {
    this.inner?.incomingQos2(packetId, held);
  }
  will(will: StoredWill | undefined): void {
    this.inner?.will(will);
    this.wills.record(this.clientId, will, this.expiryInterval);
  }
  movedAway(): void {
    this.inner?.movedAway?.();
  }
}
