// The session journal (src/broker/store/types.ts SessionJournal): a recording durable SessionStore given to
// the core, driven by in-memory connections on a fake clock. Every change to a persistent session is
// recorded once, through the journal; a session that is not kept records nothing; sessions a store loads
// come back offline with their subscriptions, queue and in-flight messages.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '../../src/broker/message.js';
import type { InflightMessage, QueuedMessage, SessionJournal, SessionStore, StoredSession, StoredWill, SubscriptionEntry } from '../../src/broker/store/types.js';
import type { ConnectPacket, PublishPacket, SubackPacket } from '../../src/protocol/packets.js';
import { FakeCore, type MemoryConnection } from '../helpers/fake-core.js';

/** A durable store that records every journal call as a line, and loads what the test gives it. */
class RecordingStore implements SessionStore {
  readonly durable = true;
  readonly lines: string[] = [];
  readonly journaled = new Set<string>();
  commits = 0;
  constructor(private readonly stored: StoredSession[] = []) {}
  load(): Iterable<StoredSession> {
    return this.stored;
  }
  journal(clientId: string): SessionJournal {
    this.journaled.add(clientId);
    const log = (line: string) => this.lines.push(`${clientId} ${line}`);
    const name = (m: Message) => m.payload.toString();
    return {
      expiry: (interval: number, at: number | undefined) => log(`expiry ${interval} ${at ?? '-'}`),
      deleted: () => log('deleted'),
      subscribed: (key: string, e: SubscriptionEntry) => log(`subscribed ${key} qos${e.qos}`),
      unsubscribed: (key: string) => log(`unsubscribed ${key}`),
      queued: (q: QueuedMessage) => log(`queued ${name(q.message)}`),
      dequeued: (q: QueuedMessage) => log(`dequeued ${name(q.message)}`),
      inflight: (m: InflightMessage) => log(`inflight ${m.packetId} ${name(m.message)} ${m.state}`),
      released: (id: number) => log(`released ${id}`),
      incomingQos2: (id: number, held: boolean) => log(`incomingQos2 ${id} ${held ? 'held' : 'released'}`),
      will: (w: StoredWill | undefined) => log(`will ${w?.will.topic ?? '-'} ${w?.publishAt ?? '-'}`),
    };
  }
  afterCommit(done: () => void): void {
    this.commits++;
    done();
  }
  close(): void {}
  /** Removes and returns the lines recorded so far. */
  take(): string[] {
    return this.lines.splice(0);
  }
}

const T0 = 1_000_000; // FakeClock's start

function connect5(fake: FakeCore, clientId: string, expiry: number, clean = false, extra: Partial<ConnectPacket> = {}): MemoryConnection {
  const c = fake.connect({ protocolVersion: 5, clientId, clean, properties: { sessionExpiryInterval: expiry }, ...extra });
  assert.equal(c.take(2).length, 1, 'CONNACK');
  return c;
}
const publish = (c: MemoryConnection, topic: string, payload: string, qos: 0 | 1 | 2, packetId?: number) =>
  c.send({ type: 3, topic, payload: Buffer.from(payload), qos, retain: false, dup: false, packetId } as PublishPacket);

describe('session journal', () => {
  it('every kind of change to a persistent session is journaled, once each', () => {
    const store = new RecordingStore();
    const fake = new FakeCore({ sessionStore: store });
    const pub = fake.connect({ protocolVersion: 5, clientId: 'pub', clean: true });
    pub.take();
    assert.deepEqual(store.take(), [], 'the publisher (expiry 0) records nothing');

    let p = connect5(fake, 'p', 60, true);
    assert.deepEqual(store.take(), ['p expiry 60 -', 'p will - -'], 'the session, and that its connection has no will');

    p.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 't', qos: 2 }] } as never);
    assert.equal((p.take(9)[0] as SubackPacket).reasonCodes[0], 2);
    assert.deepEqual(store.take(), ['p subscribed t qos2']);

    // Outgoing QoS 1: in flight, then released by PUBACK.
    publish(pub, 't', 'one', 1, 1);
    const one = p.take(3)[0] as PublishPacket;
    p.send({ type: 4, packetId: one.packetId! } as never);
    // Outgoing QoS 2: in flight, stepped to 'pubrel' by PUBREC, released by PUBCOMP.
    publish(pub, 't', 'two', 2, 2);
    const two = p.take(3)[0] as PublishPacket;
    p.send({ type: 5, packetId: two.packetId! } as never);
    assert.equal(p.take(6).length, 1, 'PUBREL');
    p.send({ type: 7, packetId: two.packetId! } as never);
    assert.deepEqual(store.take(), [
      `p inflight ${one.packetId} one publish`,
      `p released ${one.packetId}`,
      `p inflight ${two.packetId} two publish`,
      `p inflight ${two.packetId} two pubrel`,
      `p released ${two.packetId}`,
    ]);

    // Incoming QoS 2: held with PUBREC, released by PUBREL.
    publish(p, 'elsewhere', 'in', 2, 77);
    assert.equal(p.take(5).length, 1, 'PUBREC');
    p.send({ type: 6, packetId: 77 } as never);
    assert.equal(p.take(7).length, 1, 'PUBCOMP');
    assert.deepEqual(store.take(), ['p incomingQos2 77 held', 'p incomingQos2 77 released']);

    // Offline: the deadline is journaled, messages are queued, and on resume dequeued and put in flight.
    p.drop();
    assert.deepEqual(store.take(), [`p expiry 60 ${T0 + 60_000}`]);
    publish(pub, 't', 'q1', 1, 3);
    publish(pub, 't', 'q0', 0);
    assert.deepEqual(store.take(), ['p queued q1'], 'QoS 0 is not queued for an offline client');
    p = connect5(fake, 'p', 60);
    const resent = p.take(3) as PublishPacket[];
    assert.deepEqual(resent.map((x) => x.payload.toString()), ['q1']);
    assert.deepEqual(store.take(), ['p expiry 60 -', 'p will - -', 'p dequeued q1', `p inflight ${resent[0]!.packetId} q1 publish`]);
    p.send({ type: 4, packetId: resent[0]!.packetId! } as never);
    store.take();

    p.send({ type: 10, packetId: 2, topicFilters: ['t'] } as never);
    assert.equal(p.take(11).length, 1, 'UNSUBACK');
    assert.deepEqual(store.take(), ['p unsubscribed t']);

    // The session ends when its expiry passes: deleted, once.
    p.drop();
    store.take();
    fake.advance(60_000);
    assert.equal(fake.inspect.hasSession('p'), false);
    assert.deepEqual(store.take(), ['p deleted']);
    fake.advance(60_000);
    assert.deepEqual(store.take(), []);
  });

  it('a shared-group member that leaves journals its handed-on messages as released / dequeued', () => {
    const store = new RecordingStore();
    const fake = new FakeCore({ sessionStore: store, limits: { receiveMaximum: 1 } });
    const p = connect5(fake, 'p', 60, true, { properties: { sessionExpiryInterval: 60, receiveMaximum: 1 } });
    const q = connect5(fake, 'q', 0, true);
    for (const c of [p, q]) c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: '$share/g/s', qos: 1 }] } as never);
    const pub = fake.connect({ protocolVersion: 5, clientId: 'pub', clean: true });
    // Round robin: p, q, p, q: p has one in flight (its Receive Maximum is 1) and one queued.
    for (let i = 1; i <= 4; i++) publish(pub, 's', `m${i}`, 1, i);
    const inflight = (p.take(3) as PublishPacket[]).map((x) => x.packetId);
    assert.equal(inflight.length, 1);
    store.take();
    q.take();
    p.drop();
    const lines = store.take();
    assert.deepEqual(lines.filter((l) => !l.startsWith('p expiry')), [`p released ${inflight[0]}`, 'p dequeued m3']);
    assert.deepEqual((q.take(3) as PublishPacket[]).map((x) => x.payload.toString()), ['m1', 'm3']);
  });

  it('a message dropped from a full queue is journaled as dequeued', () => {
    const store = new RecordingStore();
    const fake = new FakeCore({ sessionStore: store, limits: { maxQueuedMessages: 1 } });
    const p = connect5(fake, 'p', 60, true);
    p.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 't', qos: 1 }] } as never);
    p.drop();
    const pub = fake.connect({ protocolVersion: 5, clientId: 'pub', clean: true });
    store.take();
    publish(pub, 't', 'a', 1, 1);
    publish(pub, 't', 'b', 1, 2);
    assert.deepEqual(store.take(), ['p queued a', 'p dequeued a', 'p queued b']);
  });

  it('a session ended by Clean Start is deleted (its subscriptions with it), and the new one journaled from scratch', () => {
    const store = new RecordingStore();
    const fake = new FakeCore({ sessionStore: store });
    const p = connect5(fake, 'p', 60, true);
    p.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'a', qos: 1 }] } as never);
    p.drop();
    store.take();
    connect5(fake, 'p', 30, true);
    const lines = store.take();
    assert.equal(lines.filter((l) => l === 'p deleted').length, 1);
    assert.ok(lines.indexOf('p deleted') < lines.indexOf('p expiry 30 -'), lines.join('\n'));
  });

  it('a DISCONNECT that changes the Session Expiry Interval is journaled', () => {
    const store = new RecordingStore();
    const fake = new FakeCore({ sessionStore: store });
    const p = connect5(fake, 'p', 60, true);
    store.take();
    p.send({ type: 14, reasonCode: 0, properties: { sessionExpiryInterval: 5 } } as never);
    assert.deepEqual(store.take(), ['p expiry 5 -', `p expiry 5 ${T0 + 5_000}`]);
  });

  it('a clean session (expiry 0) journals nothing: no journal is even asked for', () => {
    const store = new RecordingStore();
    const fake = new FakeCore({ sessionStore: store });
    const a = connect5(fake, 'a', 0, true);
    const b = connect5(fake, 'b', 0, true);
    a.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 't', qos: 2 }] } as never);
    publish(b, 't', 'x', 2, 5);
    const got = a.take(3)[0] as PublishPacket;
    a.send({ type: 5, packetId: got.packetId! } as never);
    a.send({ type: 7, packetId: got.packetId! } as never);
    publish(a, 'u', 'y', 2, 9);
    a.send({ type: 6, packetId: 9 } as never);
    a.drop();
    b.drop();
    assert.deepEqual(store.lines, []);
    assert.deepEqual([...store.journaled], []);
  });

  it('the will of a persistent session\'s connection is journaled', () => {
    const store = new RecordingStore();
    const fake = new FakeCore({ sessionStore: store });
    const p = connect5(fake, 'p', 60, true, { will: { topic: 'w', payload: Buffer.from('bye'), qos: 0, retain: false, properties: { willDelayInterval: 10 } } } as never);
    assert.ok(store.lines.some((l) => l.startsWith('p will w')), store.lines.join('\n'));
    p.drop();
    assert.ok(store.lines.some((l) => l === `p will w ${T0 + 10_000}`), store.lines.join('\n'));
  });
});

describe('sessions loaded from a store', () => {
  const entry: SubscriptionEntry = { clientId: 'kept', filter: 'k/#', qos: 2, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionIds: [4] };
  const message = (name: string, qos: 0 | 1 | 2): Message => ({ topic: 'k/x', payload: Buffer.from(name), qos, retain: false });
  const client = { clientId: 'kept', protocolVersion: 5 as const, remoteAddress: '127.0.0.1:1', listener: 'memory' };
  const stored = (clientId: string, expiresAt: number | undefined): StoredSession => ({
    clientId,
    expiryInterval: 3600,
    expiresAt,
    client: { ...client, clientId },
    subscriptions: [['k/#', { ...entry, clientId }]],
    queue: [{ message: message('queued', 1), qos: 1, retain: false, subscriptionIds: [4], queuedAt: T0 - 1_000 }],
    inflight: [
      { packetId: 9, message: message('second', 2), qos: 2, state: 'publish', retain: false, shareKey: undefined, order: 5, subscriptionIds: [4] },
      { packetId: 3, message: message('first', 2), qos: 2, state: 'pubrel', retain: false, shareKey: undefined, order: 2 },
      { packetId: 12, message: message('third', 1), qos: 1, state: 'publish', retain: false, shareKey: undefined, order: 7 },
    ],
    incomingQos2: [40],
    will: undefined,
  });

  it('come back offline and subscribed, and are resent in order with DUP and PUBREL on resume [MQTT-4.4.0-1]', () => {
    const store = new RecordingStore([stored('kept', T0 + 60_000), stored('gone', T0)]);
    const fake = new FakeCore({ sessionStore: store });
    assert.equal(fake.inspect.hasSession('kept'), true);
    assert.equal(fake.inspect.isConnected('kept'), false);
    assert.equal(fake.inspect.hasSession('gone'), false, 'its expiresAt has passed: not restored');
    assert.deepEqual(fake.inspect.subscribers('k/x'), ['kept']);
    assert.deepEqual(store.take(), [], 'restoring records nothing');

    // A message published now queues behind the restored one.
    const pub = fake.connect({ protocolVersion: 5, clientId: 'pub', clean: true });
    publish(pub, 'k/x', 'live', 1, 1);
    const c = connect5(fake, 'kept', 3600);
    const out = c.take().filter((p) => p.type === 3 || p.type === 6) as (PublishPacket | { type: 6; packetId: number })[];
    const describe = (p: (typeof out)[number]) => (p.type === 6 ? `pubrel ${p.packetId}` : `${p.payload.toString()} ${p.packetId} dup=${p.dup}`);
    assert.deepEqual(
      out.map(describe).slice(0, 3),
      ['pubrel 3', 'second 9 dup=true', 'third 12 dup=true'],
    );
    assert.deepEqual(out.slice(3).map(describe).map((d) => d.replace(/ \d+ /, ' ')), ['queued dup=false', 'live dup=false']);
    // New messages get packet ids no restored in-flight message uses [MQTT-2.2.1-3].
    const ids = out.map((p) => p.packetId);
    assert.equal(new Set(ids).size, ids.length, ids.join(','));
    assert.equal((out[1] as PublishPacket).properties?.subscriptionIdentifier, 4);
    // The restored incoming QoS 2 id is known: PUBREL gets PUBCOMP with Success.
    c.send({ type: 6, packetId: 40 } as never);
    const pubcomp = c.take(7)[0] as { reasonCode?: number };
    assert.equal(pubcomp.reasonCode ?? 0, 0);
  });

  it('a session stored while connected (no expiresAt: the broker stopped without closing it) still expires', () => {
    const s = { ...stored('crashed', undefined), expiryInterval: 10 };
    const fake = new FakeCore({ sessionStore: new RecordingStore([s]) });
    assert.equal(fake.inspect.hasSession('crashed'), true);
    fake.advance(10_100);
    assert.equal(fake.inspect.hasSession('crashed'), false, 'gone once its Session Expiry Interval has passed since the restart');
  });

  it('a restored session still counts down to its expiresAt while nobody resumes it', () => {
    const store = new RecordingStore([stored('kept', T0 + 10_000)]);
    const fake = new FakeCore({ sessionStore: store });
    fake.advance(9_900);
    assert.equal(fake.inspect.hasSession('kept'), true);
    fake.advance(200);
    assert.equal(fake.inspect.hasSession('kept'), false);
    assert.equal(fake.inspect.subscribers('k/x').length, 0);
    assert.deepEqual(store.take().filter((l) => l === 'kept deleted'), ['kept deleted']);
  });
});
