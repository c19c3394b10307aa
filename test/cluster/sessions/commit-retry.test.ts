// Failed commits of the Redis session store are kept and sent again, so Redis ends with the node's state: sessions
// change (subscriptions, queued messages, in-flight steps, acks, expiry, sessions made and deleted) while Redis is
// stopped, or while the store's connection is killed again and again, or while replies are lost after Redis ran
// the commit; afterwards a second store (another node) reads exactly what the first holds, and every stored
// message's count equals the records that refer to it. Waiters of a failed commit fail and are never called
// again (no late acknowledgement). Last, a broker on the store over MQTT: its sessions (broker.inspect) against Redis.
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { after, before, it } from 'node:test';
import { Redis } from 'ioredis';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Message } from '../../../src/broker/message.js';
import type { InflightMessage, QueuedMessage, StoredSession, SubscriptionEntry } from '../../../src/broker/store/types.js';
import { openRedisSessionStore, RedisSessionStore } from '../../../src/cluster/redis-sessions.js';
import type { RedisSessionJournal } from '../../../src/cluster/redis-sessions-journal.js';
import { startBroker } from '../../helpers/broker.js';
import { RedisServer, noRedis } from '../../helpers/redis.js';
import { seededRandom } from '../../helpers/seeded.js';
import { describeOrSkip } from '../../helpers/skip.js';
import { TcpProxy } from '../../helpers/tcp-proxy.js';
import { delay, eventually } from '../../helpers/wait.js';

/** Offline sessions keep a deadline (a session read without one would get one written back by the reader). */
const FAR = 9_000_000_000_000;
const FAST_RETRY = { first: 20, max: 200 };

const entry = (clientId: string, filter: string, qos: 0 | 1 | 2 = 1): SubscriptionEntry => ({ clientId, filter, qos, noLocal: false, retainAsPublished: false, retainHandling: 0 });

interface ModelSession {
  journal: RedisSessionJournal;
  expiry: number;
  expiresAt: number;
  subs: Map<string, SubscriptionEntry>;
  queue: QueuedMessage[];
  inflight: Map<number, InflightMessage>;
  qos2: Set<number>;
}

/** Sessions as the node holds them, changed through their journals; the changes drawn from a seeded random source. */
class Sessions {
  readonly held = new Map<string, ModelSession>();
  private made = 0;
  private published = 0;
  private order = 0;

  constructor(
    private readonly store: RedisSessionStore,
    private readonly random: () => number,
    /** Sessions made and deleted as it goes (else a fixed set, changing). */
    private readonly churn = true,
  ) {}

  create(): string {
    const id = `c${this.made++}`;
    const journal = this.store.journal(id);
    journal.expiry(120, FAR - this.made);
    this.held.set(id, { journal, expiry: 120, expiresAt: FAR - this.made, subs: new Map(), queue: [], inflight: new Map(), qos2: new Set() });
    return id;
  }

  private pick(): ModelSession | undefined {
    const all = [...this.held.values()];
    return all.length === 0 ? undefined : all[Math.floor(this.random() * all.length)];
  }

  /** A message queued for a few sessions at once (stored once, counted per record). */
  publish(): void {
    const m: Message = { topic: `t/${this.published}`, payload: Buffer.from(`m${this.published++}`), qos: 2, retain: false, properties: undefined, expiresAt: undefined, from: 'p' };
    const targets = new Set<ModelSession>();
    for (let i = 0; i < 1 + Math.floor(this.random() * 3); i++) {
      const s = this.pick();
      if (s !== undefined) targets.add(s);
    }
    for (const s of targets) {
      const item: QueuedMessage = { message: m, qos: 1, retain: false, queuedAt: this.published };
      s.queue.push(item);
      s.journal.queued(item);
    }
  }

  /** One random change (or a few, so that some are made and undone within one turn). */
  step(): void {
    const r = this.random();
    const s = this.pick();
    if (s === undefined || (r < 0.05 && this.churn)) {
      this.create();
      return;
    }
    if (r < 0.35) this.publish();
    else if (r < 0.5) {
      // Taken from the queue into flight.
      const item = s.queue.shift();
      if (item === undefined) return;
      s.journal.dequeued(item);
      let packetId = 1;
      while (s.inflight.has(packetId)) packetId++;
      const m: InflightMessage = { packetId, message: item.message, qos: 2, state: 'publish', retain: false, shareKey: undefined, order: this.order++ };
      s.inflight.set(packetId, m);
      s.journal.inflight(m);
    } else if (r < 0.6) {
      // PUBREC came: on to pubrel.
      const m = [...s.inflight.values()].find((x) => x.state === 'publish');
      if (m === undefined) return;
      const next: InflightMessage = { ...m, state: 'pubrel' };
      s.inflight.set(m.packetId, next);
      s.journal.inflight(next);
    } else if (r < 0.72) {
      // Acknowledged.
      const m = [...s.inflight.values()][0];
      if (m === undefined) return;
      s.inflight.delete(m.packetId);
      s.journal.released(m.packetId);
    } else if (r < 0.8) {
      const filter = `f/${Math.floor(this.random() * 5)}`;
      if (s.subs.has(filter)) {
        s.subs.delete(filter);
        s.journal.unsubscribed(filter);
      } else {
        const e = entry([...this.held.entries()].find(([, v]) => v === s)![0], filter);
        s.subs.set(filter, e);
        s.journal.subscribed(filter, e);
      }
    } else if (r < 0.87) {
      const pid = 1 + Math.floor(this.random() * 4);
      const held = !s.qos2.has(pid);
      if (held) s.qos2.add(pid);
      else s.qos2.delete(pid);
      s.journal.incomingQos2(pid, held);
    } else if (r < 0.94) {
      s.expiresAt -= 1000;
      s.journal.expiry(s.expiry, s.expiresAt);
    } else if (this.held.size > 3 && this.churn) {
      for (const [id, v] of this.held) if (v === s) this.held.delete(id);
      s.journal.deleted();
    }
  }
}

/** A session as stored, in a form to compare. */
function shape(s: { clientId: string; expiryInterval: number; expiresAt: number | undefined; subscriptions: [string, SubscriptionEntry][]; queue: QueuedMessage[]; inflight: InflightMessage[]; incomingQos2: number[] }) {
  return {
    clientId: s.clientId,
    expiry: s.expiryInterval,
    expiresAt: s.expiresAt,
    subs: [...s.subscriptions].sort((a, b) => a[0].localeCompare(b[0])).map(([k, e]) => [k, e.filter, e.qos]),
    queue: s.queue.map((q) => `${q.message.topic}=${q.message.payload.toString()}`),
    inflight: [...s.inflight].sort((a, b) => a.order - b.order).map((m) => `${m.packetId}:${m.state}:${m.message.payload.toString()}`),
    qos2: [...s.incomingQos2].sort((a, b) => a - b),
  };
}

function modelShapes(sessions: Sessions): ReturnType<typeof shape>[] {
  return [...sessions.held.entries()]
    .map(([clientId, s]) => shape({ clientId, expiryInterval: s.expiry, expiresAt: s.expiresAt, subscriptions: [...s.subs.entries()], queue: s.queue, inflight: [...s.inflight.values()], incomingQos2: [...s.qos2] }))
    .sort((a, b) => a.clientId.localeCompare(b.clientId));
}

/** What another node reads from Redis now. */
async function storedShapes(url: string, prefix: string): Promise<ReturnType<typeof shape>[]> {
  const redis = new Redis(url);
  try {
    const other = await RedisSessionStore.open(redis, { prefix });
    const loaded: StoredSession[] = [...other.load()];
    return loaded.map((s) => shape(s)).sort((a, b) => a.clientId.localeCompare(b.clientId));
  } finally {
    redis.disconnect();
  }
}

/** Every stored message's count equals the queue and in-flight records that refer to it; none is missing. */
async function checkCounts(admin: Redis, prefix: string): Promise<number> {
  const refs = new Map<string, number>();
  for (const key of await admin.keys(`${prefix}:session:*`)) {
    if (!key.endsWith(':queue') && !key.endsWith(':inflight')) continue;
    for (const text of Object.values(await admin.hgetall(key))) {
      const id = (JSON.parse(text) as { m: string }).m;
      refs.set(id, (refs.get(id) ?? 0) + 1);
    }
  }
  const stored = new Map<string, number>();
  for (const key of await admin.keys(`${prefix}:msg:*`)) stored.set(key.slice(`${prefix}:msg:`.length), Number(await admin.hget(key, 'refs')));
  if (process.env.DEBUG_COUNTS) console.log(JSON.stringify({ stored: [...stored.entries()].sort(), refs: [...refs.entries()].sort() }));
  assert.deepEqual([...stored.entries()].sort(), [...refs.entries()].sort(), 'message counts equal the records that refer to them (and no message without one)');
  return stored.size;
}

const outcome = (store: RedisSessionStore): Promise<string> => new Promise((resolve) => store.afterCommit(() => resolve('done'), (err) => resolve(`failed: ${err.message}`)));

/** Every change is in Redis (nothing kept) and commits work. */
async function caughtUp(store: RedisSessionStore, timeoutMs = 10_000): Promise<void> {
  await eventually(() => store.writeProblem === undefined && store.writer.unwritten === 0, timeoutMs, 'the kept commits written');
  assert.equal(await outcome(store), 'done');
}

describeOrSkip('cluster sessions: failed commits retried', noRedis, () => {
  let prefixes = 0;
  let shared: RedisServer;
  let admin: Redis;
  before(async () => {
    shared = await RedisServer.start();
    admin = new Redis(shared.url);
  });
  after(async () => {
    admin?.disconnect();
    await shared?.close();
  });

  it('Redis stopped while sessions change, started again: Redis ends with what the node holds; the waiters of failed commits fail, once', async () => {
    const own = await RedisServer.start({ persistent: true });
    const ownAdmin = new Redis(own.url);
    const warnings: string[] = [];
    const prefix = `s${prefixes++}`;
    const store = await openRedisSessionStore(own.url, { prefix, retryMs: FAST_RETRY, warn: (m) => warnings.push(m) });
    try {
      const sessions = new Sessions(store, seededRandom(1));
      for (let i = 0; i < 6; i++) sessions.create();
      for (let i = 0; i < 200; i++) sessions.step();
      await caughtUp(store);
      assert.deepEqual(await storedShapes(own.url, prefix), modelShapes(sessions), 'before the outage');
      await checkCounts(ownAdmin, prefix);

      await own.stop();
      await eventually(() => store.redis.status !== 'ready', 3000, 'the store sees Redis gone');
      const calls: string[] = [];
      for (let turn = 0; turn < 40; turn++) {
        for (let i = 0; i < 10; i++) sessions.step();
        store.afterCommit(() => calls.push('done'), () => calls.push('failed'));
        await delay(1);
      }
      await eventually(() => calls.length === 40, 3000, 'every waiter answered');
      assert.deepEqual(new Set(calls), new Set(['failed']), 'nothing is acknowledged while Redis is away');
      assert.ok(store.writeProblem !== undefined);
      assert.ok(store.writer.unwritten > 0, 'the changes are kept');

      await own.restart();
      await caughtUp(store);
      assert.equal(calls.length, 40, 'a failed waiter is not called again once the change is written');
      assert.deepEqual(await storedShapes(own.url, prefix), modelShapes(sessions), 'after the outage: what the node holds');
      assert.ok((await checkCounts(ownAdmin, prefix)) > 0);
      assert.equal(warnings.filter((w) => w.startsWith('redis session write failed')).length, 1, `one warning for the outage: ${warnings.join(' | ')}`);
      assert.equal(warnings.filter((w) => w.startsWith('redis session writes work again')).length, 1, 'one when it works again');

      // And on from there.
      for (let i = 0; i < 100; i++) sessions.step();
      await caughtUp(store);
      assert.deepEqual(await storedShapes(own.url, prefix), modelShapes(sessions));
      await checkCounts(ownAdmin, prefix);
    } finally {
      store.close();
      await store.whenClosed();
      ownAdmin.disconnect();
      await own.close();
    }
  });

  it('Redis away: a waiter that recorded nothing this turn (a PUBLISH to clean sessions only) is not refused for the kept changes; one that recorded something is, and whenWritten() waits for all', async () => {
    const own = await RedisServer.start();
    const prefix = `s${prefixes++}`;
    const store = await openRedisSessionStore(own.url, { prefix, retryMs: FAST_RETRY });
    try {
      const sessions = new Sessions(store, seededRandom(7));
      for (let i = 0; i < 3; i++) sessions.create();
      for (let i = 0; i < 30; i++) sessions.step();
      await caughtUp(store);
      await own.stop();
      await eventually(() => store.redis.status !== 'ready', 3000, 'the store sees Redis gone');
      for (let i = 0; i < 5; i++) sessions.step();
      assert.match(await outcome(store), /^failed/, 'a change that cannot be written now is refused');
      assert.ok(store.writer.unwritten > 0, 'and kept for later');
      assert.equal(await outcome(store), 'done', 'nothing recorded this turn: nothing to refuse (local traffic goes on)');
      const barrier = await new Promise<string>((resolve) => store.whenWritten(() => resolve('done'), () => resolve('failed')));
      assert.equal(barrier, 'failed', 'whenWritten() is about every change so far');
      await own.restart();
      await caughtUp(store);
    } finally {
      store.close();
      await store.whenClosed();
      await own.close();
    }
  });

  it('a commit Redis ran whose reply was lost is sent again and counts once (the same state as applied once)', async () => {
    const proxy = await TcpProxy.start(shared.port);
    const prefix = `s${prefixes++}`;
    const store = await openRedisSessionStore(proxy.url, { prefix, retryMs: FAST_RETRY });
    try {
      const a = store.journal('a');
      const b = store.journal('b');
      a.expiry(60, FAR);
      b.expiry(60, FAR);
      await caughtUp(store);
      const m: Message = { topic: 't', payload: Buffer.from('once'), qos: 1, retain: false, properties: undefined, expiresAt: undefined, from: 'p' };
      const qa: QueuedMessage = { message: m, qos: 1, retain: false, queuedAt: 1 };
      const qb: QueuedMessage = { message: m, qos: 1, retain: false, queuedAt: 1 };

      proxy.holdReplies();
      a.queued(qa);
      b.queued(qb);
      a.subscribed('x', entry('a', 'x'));
      const first = outcome(store);
      // Redis ran it: the records and a count of 2 are there.
      let msgKey = '';
      await eventually(() => proxy.swallowed > 0, 3000, 'the reply');
      for (const k of await admin.keys(`${prefix}:msg:*`)) msgKey = k;
      assert.equal(await admin.hget(msgKey, 'refs'), '2');
      proxy.cut();
      assert.match(await first, /^failed/, 'its waiter fails: the reply never came');
      await caughtUp(store);
      assert.ok(store.writer.stats.retried >= 1, 'sent again');
      assert.equal(await admin.hget(msgKey, 'refs'), '2', 'counted once');
      assert.deepEqual(await storedShapes(shared.url, prefix), [
        { clientId: 'a', expiry: 60, expiresAt: FAR, subs: [['x', 'x', 1]], queue: ['t=once'], inflight: [], qos2: [] },
        { clientId: 'b', expiry: 60, expiresAt: FAR, subs: [], queue: ['t=once'], inflight: [], qos2: [] },
      ]);
      // The last record let go deletes the message: the count is exact.
      a.dequeued(qa);
      b.dequeued(qb);
      await caughtUp(store);
      assert.equal(await admin.exists(msgKey), 0);

      // The same with a release lost: counted down once.
      const m2: Message = { ...m, payload: Buffer.from('two') };
      const items = [a, b].map((j) => {
        const q: QueuedMessage = { message: m2, qos: 1, retain: false, queuedAt: 2 };
        j.queued(q);
        return q;
      });
      await caughtUp(store);
      for (const k of await admin.keys(`${prefix}:msg:*`)) msgKey = k;
      proxy.holdReplies();
      a.dequeued(items[0]!);
      const second = outcome(store);
      await eventually(() => proxy.swallowed > 0, 3000, 'the reply');
      assert.equal(await admin.hget(msgKey, 'refs'), '1');
      proxy.cut();
      assert.match(await second, /^failed/);
      await caughtUp(store);
      assert.equal(await admin.hget(msgKey, 'refs'), '1', 'released once');
      await checkCounts(admin, prefix);
    } finally {
      store.close();
      await store.whenClosed();
      await proxy.close();
    }
  });

  it("the store's connection killed again and again (CLIENT KILL) while sessions change: Redis ends with the node's state", async () => {
    const prefix = `s${prefixes++}`;
    const store = await openRedisSessionStore(shared.url, { prefix, retryMs: FAST_RETRY });
    try {
      const sessions = new Sessions(store, seededRandom(7));
      for (let i = 0; i < 5; i++) sessions.create();
      let kills = 0;
      for (let turn = 0; turn < 150; turn++) {
        for (let i = 0; i < 5; i++) sessions.step();
        if (turn % 15 === 7 && store.redis.status === 'ready') {
          const id = await store.redis.client('ID').catch(() => undefined);
          if (id !== undefined) {
            // Right after this turn's commit went out: some commits ran, some did not, replies lost.
            setImmediate(() => void admin.client('KILL', 'ID', String(id)).then(() => kills++, () => {}));
          }
        }
        await delay(2);
      }
      await caughtUp(store);
      assert.ok(kills >= 5, `connections killed: ${kills}`);
      assert.ok(store.writer.stats.failed > 0, 'some commits failed');
      assert.deepEqual(await storedShapes(shared.url, prefix), modelShapes(sessions));
      await checkCounts(admin, prefix);
    } finally {
      store.close();
      await store.whenClosed();
    }
  });

  it('past the bound, what is kept is compacted to its net effect (it grows with the state, not the traffic) and still ends right', async () => {
    const own = await RedisServer.start({ persistent: true });
    const ownAdmin = new Redis(own.url);
    const warnings: string[] = [];
    const prefix = `s${prefixes++}`;
    const store = await openRedisSessionStore(own.url, { prefix, retryMs: FAST_RETRY, maxKept: 300, warn: (m) => warnings.push(m) });
    try {
      const sessions = new Sessions(store, seededRandom(3), false);
      for (let i = 0; i < 5; i++) sessions.create();
      for (let i = 0; i < 100; i++) sessions.step();
      await caughtUp(store);
      await own.stop();
      await eventually(() => store.redis.status !== 'ready', 3000, 'the store sees Redis gone');
      let most = 0;
      let state = 0;
      for (let turn = 0; turn < 300; turn++) {
        for (let i = 0; i < 8; i++) sessions.step();
        await delay(0);
        // What the sessions hold (records, subscriptions, ids, each session's hashes): the net effect's size.
        state = 0;
        for (const s of sessions.held.values()) state += 3 + s.queue.length + s.inflight.size + s.subs.size + s.qos2.size;
        most = Math.max(most, store.writer.unwritten - 2 * state);
      }
      assert.ok(store.writer.stats.compacted > 0, 'compacted');
      assert.ok(most <= 300, `kept at most ${most} commands more than twice the state (${state} at the end) for ${300 * 8} changes`);
      assert.equal(warnings.filter((w) => w.includes('net effect')).length, 1, 'said once');
      await own.restart();
      await caughtUp(store);
      assert.deepEqual(await storedShapes(own.url, prefix), modelShapes(sessions));
      await checkCounts(ownAdmin, prefix);
    } finally {
      store.close();
      await store.whenClosed();
      ownAdmin.disconnect();
      await own.close();
    }
  });

  it('a broker on the store: what happens while Redis is stopped (QoS 1 refused with 0x97 but queued, a resumed session acknowledging) is in Redis once it is back', async () => {
    const own = await RedisServer.start({ persistent: true });
    const prefix = `s${prefixes++}`;
    const store = await openRedisSessionStore(own.url, { prefix, retryMs: FAST_RETRY });
    const { broker, url } = await startBroker({ sessionStore: store });
    const clients: MqttClient[] = [];
    const connect = (o: IClientOptions, onMessage?: (topic: string, payload: Buffer) => void): Promise<MqttClient> => {
      const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 5, ...o });
      clients.push(c);
      // Queued messages come right after the CONNACK.
      if (onMessage !== undefined) c.on('message', onMessage);
      return new Promise((resolve, reject) => c.once('connect', () => resolve(c)).once('error', reject));
    };
    const end = (c: MqttClient) => new Promise<void>((r) => c.end(false, {}, () => r()));
    try {
      const persistent = { clean: false, properties: { sessionExpiryInterval: 3600 } };
      for (const id of ['keep', 'reader']) {
        const c = await connect({ clientId: id, ...persistent });
        await c.subscribeAsync(id === 'keep' ? 'q/#' : 'r/#', { qos: 1 });
        await end(c);
      }
      const pub = await connect({ clientId: 'pub' });
      for (let i = 0; i < 3; i++) await pub.publishAsync(`r/${i}`, `early${i}`, { qos: 1 });
      await eventually(() => broker.inspect.session('reader')?.queued === 3);

      await own.stop();
      await eventually(() => store.redis.status !== 'ready', 3000, 'the store sees Redis gone');
      // Not acknowledged: it cannot be stored now (5.0: 0x97); the broker still holds it for 'keep'.
      await assert.rejects(pub.publishAsync('q/1', 'during', { qos: 1 }), (err: Error & { code?: number }) => err.code === 0x97);
      await eventually(() => broker.inspect.session('keep')?.queued === 1);
      // 'reader' comes back and takes its three queued messages (acknowledged: gone from its session).
      const got: string[] = [];
      const reader = await connect({ clientId: 'reader', ...persistent }, (topic, payload) => got.push(`${topic}=${payload.toString()}`));
      await eventually(() => got.length === 3 && broker.inspect.session('reader')?.inflight === 0, 3000, 'reader drained');
      await end(reader);

      await own.restart();
      await caughtUp(store);
      const stored = new Map((await storedShapes(own.url, prefix)).map((x) => [x.clientId, x]));
      for (const id of ['keep', 'reader']) {
        const view = broker.inspect.session(id)!;
        const s = stored.get(id)!;
        assert.equal(s.queue.length, view.queued, `${id}: queued as the broker holds it`);
        assert.equal(s.inflight.length, view.inflight, `${id}: in flight as the broker holds it`);
        assert.deepEqual(s.subs.map(([k]) => k), view.subscriptions.map((v) => v.topicFilter), `${id}: subscriptions`);
        assert.equal(s.expiry, view.expiryInterval);
      }
      assert.deepEqual(stored.get('keep')!.queue, ['q/1=during'], 'the message queued while Redis was away is stored');
      assert.deepEqual(stored.get('reader')!.queue, [], 'the acknowledgements made while Redis was away are stored');
      const check = new Redis(own.url);
      await checkCounts(check, prefix).finally(() => check.disconnect());
    } finally {
      for (const c of clients) c.end(true);
      await broker.close();
      await store.whenClosed();
      await own.close();
    }
  });
});
