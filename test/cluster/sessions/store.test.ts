// RedisSessionStore on a real redis-server: each journal call and the Redis state it leaves (read back with
// plain commands), one commit per event-loop turn, afterCommit after the reply (failed when Redis is
// gone), a message queued for many sessions stored once, and open()/load()/fetch() giving sessions back.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { Buffer } from 'node:buffer';
import { Redis } from 'ioredis';
import { RedisSessionStore, openRedisSessionStore } from '../../../src/cluster/redis-sessions.js';
import type { Message } from '../../../src/broker/message.js';
import type { QueuedMessage, SubscriptionEntry } from '../../../src/broker/store/types.js';
import { RedisServer, noRedis } from '../../helpers/redis.js';
import { describeOrSkip } from '../../helpers/skip.js';

const message = (topic: string, payload = 'x', extra: Partial<Message> = {}): Message => ({ topic, payload: Buffer.from(payload), qos: 1, retain: false, properties: undefined, expiresAt: undefined, from: 'pub', ...extra });
const queued = (m: Message, queuedAt = 1): QueuedMessage => ({ message: m, qos: 1, retain: false, queuedAt });
const entry = (clientId: string, filter: string): SubscriptionEntry => ({ clientId, filter, qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionIds: [7] });
const committed = (store: RedisSessionStore): Promise<void> => new Promise((resolve, reject) => store.afterCommit(resolve, reject));

let server: RedisServer;
let redis: Redis;
let prefixes = 0;

async function fresh(options: { clock?: { now(): number } } = {}): Promise<{ store: RedisSessionStore; prefix: string }> {
  const prefix = `t${prefixes++}`;
  const store = await RedisSessionStore.open(redis, { prefix, ...options });
  return { store, prefix };
}

/** The store's keys (the writers' marks of the last commit applied left out). */
async function keysOf(prefix: string): Promise<string[]> {
  return (await redis.keys(`${prefix}:*`)).filter((k) => !k.startsWith(`${prefix}:applied:`)).sort();
}

/** Commits Redis ran: each is one script call. */
async function commitCalls(): Promise<number> {
  const info = await redis.info('commandstats');
  return Number(/cmdstat_evalsha:calls=(\d+)/.exec(info)?.[1] ?? 0) + Number(/cmdstat_eval:calls=(\d+)/.exec(info)?.[1] ?? 0);
}

describeOrSkip('cluster sessions: RedisSessionStore', noRedis, () => {
  before(async () => {
    server = await RedisServer.start();
    redis = new Redis(server.url);
  });
  after(async () => {
    redis?.disconnect();
    await server?.close();
  });

  it('expiry, client, subscriptions, will and incoming QoS 2 ids land in the session hashes; deleted() removes every key', async () => {
    const { store, prefix } = await fresh();
    const j = store.journal('c:1');
    const client = { clientId: 'c:1', protocolVersion: 5 as const, remoteAddress: '127.0.0.1:1', listener: 'tcp' };
    j.expiry(60, undefined, client);
    j.subscribed('a/+', entry('c:1', 'a/+'));
    j.subscribed('b', entry('c:1', 'b'));
    j.unsubscribed('b');
    j.incomingQos2(5, true);
    j.incomingQos2(6, true);
    j.incomingQos2(5, false);
    j.will({ will: { topic: 'w', payload: Buffer.from([0, 255]), qos: 1, retain: false }, client, publishAt: undefined });
    await committed(store);
    const main = await redis.hgetall(`${prefix}:session:{c:1}`);
    assert.equal(main.expiry, '60');
    assert.equal(main.expiresAt, '', 'connected: no deadline');
    assert.deepEqual(JSON.parse(main.client!), client);
    assert.ok(main.will!.includes('"topic":"w"'));
    assert.deepEqual(Object.keys(await redis.hgetall(`${prefix}:session:{c:1}:subs`)), ['a/+']);
    assert.deepEqual(await redis.smembers(`${prefix}:session:{c:1}:qos2`), ['6']);

    j.expiry(60, 123_456);
    j.will(undefined);
    await committed(store);
    const after = await redis.hgetall(`${prefix}:session:{c:1}`);
    assert.equal(after.expiresAt, '123456');
    assert.equal(after.will, undefined);
    assert.ok(after.client !== undefined, 'the client is kept when expiry() gives none');

    j.deleted();
    await committed(store);
    assert.deepEqual(await keysOf(prefix), []);
  });

  it('a message queued for two sessions is stored once with a reference count; the last dequeue deletes it', async () => {
    const { store, prefix } = await fresh();
    const a = store.journal('a');
    const b = store.journal('b');
    a.expiry(60, undefined);
    b.expiry(60, undefined);
    const m = message('t/1', 'shared');
    const qa = queued(m);
    const qb = queued(m);
    a.queued(qa);
    b.queued(qb);
    await committed(store);
    const msgKeys = (await keysOf(prefix)).filter((k) => k.includes(':msg:'));
    assert.equal(msgKeys.length, 1, 'stored once');
    assert.equal(await redis.hget(msgKeys[0]!, 'refs'), '2');
    const record = JSON.parse((await redis.hget(`${prefix}:session:{a}:queue`, '0'))!);
    assert.equal(`${prefix}:msg:${record.m}`, msgKeys[0]);

    a.dequeued(qa);
    await committed(store);
    assert.equal(await redis.hget(msgKeys[0]!, 'refs'), '1');
    assert.equal(await redis.hlen(`${prefix}:session:{a}:queue`), 0);
    b.dequeued(qb);
    await committed(store);
    assert.equal(await redis.exists(msgKeys[0]!), 0, 'the last reference deleted it');
  });

  it('queued and sent within one turn, or put in flight and acknowledged: nothing reaches Redis', async () => {
    const { store, prefix } = await fresh();
    const j = store.journal('quick');
    j.expiry(60, undefined);
    await committed(store);
    const before = store.writer.stats.commits;
    const q = queued(message('t'));
    j.queued(q);
    j.dequeued(q);
    const m = message('u');
    j.inflight({ packetId: 1, message: m, qos: 1, state: 'publish', retain: false, shareKey: undefined, order: 0 });
    j.released(1);
    await committed(store);
    assert.equal(store.writer.stats.commits, before, 'no commit at all');
    assert.deepEqual(await keysOf(prefix), [`${prefix}:session:{quick}`]);
  });

  it('in flight: written with its state, moved to pubrel, deleted on release; a queue-to-flight move keeps one message row', async () => {
    const { store, prefix } = await fresh();
    const j = store.journal('f');
    j.expiry(60, undefined);
    const m = message('q2', 'two', { qos: 2 });
    const q = queued(m);
    j.queued(q);
    await committed(store);
    j.dequeued(q);
    j.inflight({ packetId: 9, message: m, qos: 2, state: 'publish', retain: true, shareKey: undefined, order: 3, subscriptionIds: [1] });
    await committed(store);
    const key = `${prefix}:session:{f}:inflight`;
    let rec = JSON.parse((await redis.hget(key, '9'))!);
    assert.deepEqual([rec.q, rec.st, rec.r, rec.o, rec.i], [2, 'publish', 1, 3, [1]]);
    assert.equal(await redis.hlen(`${prefix}:session:{f}:queue`), 0);
    const msgKeys = (await keysOf(prefix)).filter((k) => k.includes(':msg:'));
    assert.equal(msgKeys.length, 1);
    assert.equal(await redis.hget(msgKeys[0]!, 'refs'), '1', 'taken from the queue into flight: the same row, one reference');
    j.inflight({ packetId: 9, message: m, qos: 2, state: 'pubrel', retain: true, shareKey: undefined, order: 3 });
    await committed(store);
    rec = JSON.parse((await redis.hget(key, '9'))!);
    assert.equal(rec.st, 'pubrel');
    j.released(9);
    await committed(store);
    assert.equal(await redis.exists(key), 0);
    assert.equal(await redis.exists(msgKeys[0]!), 0);
  });

  it('a record written in an earlier turn, moved on and released in one turn, is deleted (not written back after the HDEL)', async () => {
    const { store, prefix } = await fresh();
    const j = store.journal('order');
    j.expiry(60, undefined);
    const m1 = message('a', '1', { qos: 2 });
    const m2 = message('a', '2', { qos: 2 });
    j.inflight({ packetId: 1, message: m1, qos: 2, state: 'publish', retain: false, shareKey: undefined, order: 0 });
    j.inflight({ packetId: 2, message: m2, qos: 2, state: 'publish', retain: false, shareKey: undefined, order: 1 });
    await committed(store);
    j.released(1); // this turn's HDEL comes first
    j.inflight({ packetId: 2, message: m2, qos: 2, state: 'pubrel', retain: false, shareKey: undefined, order: 1 });
    j.released(2);
    await committed(store);
    assert.equal(await redis.exists(`${prefix}:session:{order}:inflight`), 0);
    assert.deepEqual((await keysOf(prefix)).filter((k) => k.includes(':msg:')), []);
  });

  it('group commit: every change of one turn goes in ONE commit (one script call), and afterCommit runs after its reply', async () => {
    const { store, prefix } = await fresh();
    const before = await commitCalls();
    const commitsBefore = store.writer.stats.commits;
    const order: string[] = [];
    for (let i = 0; i < 50; i++) {
      const j = store.journal(`g${i}`);
      j.expiry(60, undefined);
      j.subscribed('x', entry(`g${i}`, 'x'));
      j.queued(queued(message('x', `m${i}`)));
    }
    let seenAtDone = -1;
    store.afterCommit(() => {
      order.push('done');
      void redis.hlen(`${prefix}:session:{g49}:queue`).then((n) => (seenAtDone = n));
    });
    order.push('recorded');
    await committed(store);
    assert.deepEqual(order, ['recorded', 'done'], 'not run before the commit');
    assert.equal(store.writer.stats.commits - commitsBefore, 1, 'one commit');
    assert.equal((await commitCalls()) - before, 1, 'Redis ran one commit');
    assert.equal(seenAtDone, 1, 'what done() waited for is in Redis');
    // Redis holding writes back (CLIENT PAUSE): done() waits for the EXEC's reply, however long.
    store.journal('paused').expiry(60, undefined);
    await redis.call('client', 'pause', 300, 'WRITE');
    const start = Date.now();
    await committed(store);
    assert.ok(Date.now() - start >= 250, `done() ran ${Date.now() - start} ms after, before the reply`);
    // Nothing pending: at once.
    let now = false;
    store.afterCommit(() => (now = true));
    assert.equal(now, true);
  });

  it('afterCommit fails when Redis is gone (stopped): what waited on it is not acknowledged', async () => {
    const own = await RedisServer.start();
    try {
      const store = await openRedisSessionStore(own.url, { prefix: 'gone' });
      const j = store.journal('x');
      j.expiry(60, undefined);
      await committed(store);
      await own.stop();
      // ioredis notices the closed socket.
      await new Promise((r) => setTimeout(r, 100));
      j.queued(queued(message('t')));
      const outcome = await new Promise<string>((resolve) => store.afterCommit(() => resolve('done'), (err) => resolve(`failed: ${err.message}`)));
      assert.match(outcome, /^failed/);
      assert.ok(store.writeProblem !== undefined);
      // Redis back: commits work again (ioredis reconnects).
      await own.restart();
      await new Promise((r) => setTimeout(r, 300));
      j.queued(queued(message('t2')));
      const ok = await new Promise<string>((resolve) => store.afterCommit(() => resolve('done'), (err) => resolve(`failed: ${err.message}`)));
      assert.equal(ok, 'done', 'works again once Redis is back');
      assert.equal(store.writeProblem, undefined);
      // A commit already sent, whose reply never comes (Redis paused, then killed): failed, not resent.
      const admin = new Redis(own.url);
      await admin.call('client', 'pause', 5000, 'WRITE');
      admin.disconnect();
      j.queued(queued(message('t3')));
      const sent = new Promise<string>((resolve) => store.afterCommit(() => resolve('done'), (err) => resolve(`failed: ${err.message}`)));
      await new Promise((r) => setTimeout(r, 100));
      await own.stop();
      assert.match(await sent, /^failed/);
      store.close();
      await store.whenClosed();
    } finally {
      await own.close();
    }
  });

  it('open() gives every stored session back (sorted queue, in-flight in send order); expired ones are deleted; fetch() reads one', async () => {
    const clock = { time: 1_000_000, now() { return this.time; } };
    const { store, prefix } = await fresh({ clock });
    const shared = message('s', 'both', { properties: { correlationData: Buffer.from([1, 2]), userProperties: [['k', 'v']] }, expiresAt: 5_000_000 });
    const live = store.journal('live');
    live.expiry(100, 1_100_000);
    live.subscribed('s', entry('live', 's'));
    for (let i = 0; i < 12; i++) live.queued(queued(i === 3 ? shared : message('s', `q${i}`), i));
    live.inflight({ packetId: 20, message: message('s', 'second'), qos: 1, state: 'publish', retain: false, shareKey: undefined, order: 2 });
    live.inflight({ packetId: 30, message: message('s', 'first'), qos: 2, state: 'pubrel', retain: false, shareKey: undefined, order: 1 });
    live.incomingQos2(4, true);
    const old = store.journal('old');
    old.expiry(10, 1_010_000);
    old.queued(queued(shared));
    old.will({ will: { topic: 'w', payload: Buffer.from('bye'), qos: 0, retain: false }, client: { clientId: 'old', protocolVersion: 4, remoteAddress: 'r', listener: 'l' }, publishAt: 1_010_000 });
    const connected = store.journal('connected');
    connected.expiry(50, undefined);
    await committed(store);
    store.close();
    await store.whenClosed();

    clock.time = 1_020_000; // 'old' expired while no broker ran
    const again = await RedisSessionStore.open(redis, { prefix, clock });
    const sessions = new Map([...again.load()].map((s) => [s.clientId, s]));
    assert.deepEqual([...sessions.keys()].sort(), ['connected', 'live', 'old']);
    const s = sessions.get('live')!;
    assert.equal(s.expiresAt, 1_100_000);
    assert.deepEqual(s.subscriptions, [['s', entry('live', 's')]]);
    assert.deepEqual(s.queue.map((q) => q.message.payload.toString()), ['q0', 'q1', 'q2', 'both', 'q4', 'q5', 'q6', 'q7', 'q8', 'q9', 'q10', 'q11'], 'numeric seq order');
    assert.deepEqual(s.queue[3]!.message.properties, shared.properties, 'Buffers and user properties come back');
    assert.equal(s.queue[3]!.message.expiresAt, 5_000_000);
    assert.deepEqual(s.inflight.map((m) => [m.packetId, m.state]), [[30, 'pubrel'], [20, 'publish']], 'send order');
    assert.deepEqual(s.incomingQos2, [4]);
    assert.equal(sessions.get('connected')!.expiresAt, 1_020_000 + 50_000, 'connected when stopped: offline from now');
    const expired = sessions.get('old')!;
    assert.ok(expired.expiresAt! <= clock.time, 'given back expired, for its will');
    assert.equal(expired.will?.will.topic, 'w');
    assert.equal(sessions.get('old')!.queue[0]!.message, s.queue[3]!.message, 'a shared message is one object');
    await committed(again);
    assert.equal(await redis.exists(`${prefix}:session:{old}`), 0, 'the expired session is deleted');
    const msgKey = (await keysOf(prefix)).filter((k) => k.includes(':msg:'));
    assert.equal(msgKey.length, 14 - 0, 'its messages are released (the shared one still held by live)');
    assert.equal(await redis.hget(`${prefix}:session:{connected}`, 'expiresAt'), String(1_070_000), 'deadline written back');

    // Another node fetches 'live' on demand.
    const other = await RedisSessionStore.open(redis, { prefix: `${prefix}-none`, clock });
    assert.equal(await other.fetch('live'), undefined, 'another prefix: none');
    const node2 = new Map<string, RedisSessionStore>();
    node2.set('n', await RedisSessionStore.open(redis, { prefix, clock }));
    const fetched = await node2.get('n')!.fetch('live');
    assert.equal(fetched?.queue.length, 12);
    assert.equal(await node2.get('n')!.fetch('nobody'), undefined);
    clock.time = 1_200_000;
    assert.equal(await node2.get('n')!.fetch('live'), undefined, 'expired: none');
  });

  it('a message keeps the cluster identity the node gave it (writer.identify) through Redis: identitiesOf() a session just fetched gives its queued and in-flight ones', async () => {
    const { store, prefix } = await fresh();
    const named = new Map<Message, string>();
    store.writer.identify = (m) => named.get(m);
    const s = store.journal('moving');
    s.expiry(60, undefined);
    const [m1, m2, m3] = [message('t', 'one'), message('t', 'two'), message('t', 'three')];
    named.set(m1, 'c\ne\n1').set(m2, 'c\ne\n2');
    s.queued(queued(m1));
    s.queued(queued(m3)); // no identity (not from a cluster's dispatch)
    s.inflight({ packetId: 5, message: m2, qos: 2, state: 'publish', retain: false, shareKey: undefined, order: 1 });
    await committed(store);
    const other = await RedisSessionStore.open(redis, { prefix });
    assert.equal((await other.fetch('moving'))?.queue.length, 2);
    assert.deepEqual(other.identitiesOf('moving'), new Set(['c\ne\n1', 'c\ne\n2']));
  });

  it('client ids holding key syntax (colons, braces, glob characters) come back as they were, each with its own keys', async () => {
    const { store, prefix } = await fresh();
    const ids = ['a', 'a}:subs', 'b:c', '{x}', 'star*[?]\\', 'ü/é'];
    for (const id of ids) {
      const j = store.journal(id);
      j.expiry(60, 9_999_999_999_999);
      j.subscribed('t', entry(id, 't'));
    }
    await committed(store);
    const again = await RedisSessionStore.open(redis, { prefix });
    const loaded = [...again.load()];
    assert.deepEqual(loaded.map((s) => s.clientId).sort(), [...ids].sort());
    for (const s of loaded) assert.deepEqual(s.subscriptions, [['t', entry(s.clientId, 't')]]);
  });
});
