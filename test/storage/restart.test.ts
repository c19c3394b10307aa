// Durable storage across a restart of an in-process broker (SQLite in a temporary data directory):
// sessions, subscriptions, queues, in-flight state, incoming QoS 2 ids and retained messages come back;
// expiry deadlines keep counting; what is stored, and what never touches the disk.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConnackPacket, PubAckLikePacket, PublishPacket, SubackPacket } from '../../src/protocol/packets.js';
import { RawClient } from '../helpers/raw-client.js';
import { FakeClock } from '../helpers/fake-core.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { SqliteSessionStore } from '../../src/storage/sqlite-store.js';
import { brokerOn, dataDir, queuedOnDisk, rowCounts } from './helpers.js';

const v5 = (clientId: string, expiry = 3600, clean = false) => ({ clientId, protocolVersion: 5 as const, clean, properties: { sessionExpiryInterval: expiry } });

async function connect(port: number, fields: Parameters<typeof RawClient.connect>[1]): Promise<{ client: RawClient; connack: ConnackPacket }> {
  return RawClient.connect(port, fields);
}

describe('storage: restart', () => {
  it('a persistent session, its subscription options and identifiers, its queue and a retained message come back after a restart', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    let { port } = await brokers.start();

    const sub = (await connect(port, v5('persist-1'))).client;
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'a/+', qos: 1, noLocal: true, retainAsPublished: true, retainHandling: 2 }], properties: { subscriptionIdentifier: 42 } });
    assert.deepEqual(((await sub.next(9)) as SubackPacket).reasonCodes, [1]);
    sub.send({ type: 14, reasonCode: 0 });
    await sub.waitClosed();

    const pub = (await connect(port, { clientId: 'pub', protocolVersion: 5 })).client;
    pub.send({ type: 3, topic: 'a/b', payload: Buffer.from('queued'), qos: 1, retain: false, dup: false, packetId: 1, properties: { userProperties: [['k', 'v']], correlationData: Buffer.from([1, 2, 3]), contentType: 'text/plain' } });
    await pub.next(4);
    pub.send({ type: 3, topic: 'r/t', payload: Buffer.from('kept'), qos: 1, retain: true, dup: false, packetId: 2 });
    await pub.next(4);
    pub.destroy();

    await brokers.stop();
    ({ port } = await brokers.start());

    const back = await connect(port, v5('persist-1'));
    assert.equal(back.connack.sessionPresent, true, 'the session is back');
    const m = (await back.client.next(3)) as PublishPacket;
    assert.equal(m.payload.toString(), 'queued');
    assert.equal(m.qos, 1);
    assert.deepEqual(m.properties?.userProperties, [['k', 'v']]);
    assert.deepEqual(m.properties?.correlationData, Buffer.from([1, 2, 3]));
    assert.equal(m.properties?.contentType, 'text/plain');
    assert.deepEqual(m.properties?.subscriptionIdentifier, 42, 'the subscription identifier is kept');
    back.client.send({ type: 4, packetId: m.packetId! });
    back.client.destroy();

    const reader = (await connect(port, { clientId: 'reader', protocolVersion: 5 })).client;
    reader.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'r/#', qos: 1 }] });
    await reader.next(9);
    const r = (await reader.next(3)) as PublishPacket;
    assert.equal(r.topic, 'r/t');
    assert.equal(r.payload.toString(), 'kept');
    assert.equal(r.retain, true);
    reader.destroy();
  });

  it('expiry deadlines keep counting while the broker is down: a session whose expiry passed is gone, the other one is back', async (t) => {
    const dir = dataDir(t);
    const clock = new FakeClock(Date.now());
    const brokers = brokerOn(t, dir, { clock });
    let { port } = await brokers.start();
    for (const [id, expiry] of [['short', 10], ['long', 1000]] as const) {
      const c = (await connect(port, v5(id, expiry))).client;
      c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'x', qos: 1 }] });
      await c.next(9);
      c.send({ type: 14, reasonCode: 0 });
      await c.waitClosed();
    }
    await brokers.stop();
    clock.time += 11_000; // the broker is down 11 s
    ({ port } = await brokers.start());
    const short = await connect(port, v5('short', 10));
    assert.equal(short.connack.sessionPresent, false, 'expired during the downtime');
    const long = await connect(port, v5('long', 1000));
    assert.equal(long.connack.sessionPresent, true);
    short.client.destroy();
    long.client.destroy();
  });

  it('[MQTT-4.4.0-1] an unacknowledged QoS 1 message is resent with DUP and the same packet id after a restart', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    let { port } = await brokers.start();
    const sub = (await connect(port, { clientId: 'slow', clean: false, protocolVersion: 4 })).client;
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 't', qos: 1 }] });
    await sub.next(9);
    const pub = (await connect(port, { clientId: 'p', protocolVersion: 4 })).client;
    pub.send({ type: 3, topic: 't', payload: Buffer.from('m1'), qos: 1, retain: false, dup: false, packetId: 9 });
    await pub.next(4);
    const first = (await sub.next(3)) as PublishPacket;
    assert.equal(first.dup, false);
    sub.destroy(); // never acknowledged
    pub.destroy();
    await brokers.stop();
    ({ port } = await brokers.start());
    const back = await connect(port, { clientId: 'slow', clean: false, protocolVersion: 4 });
    assert.equal(back.connack.sessionPresent, true);
    const again = (await back.client.next(3)) as PublishPacket;
    assert.equal(again.payload.toString(), 'm1');
    assert.equal(again.dup, true);
    assert.equal(again.packetId, first.packetId);
    back.client.destroy();
  });

  it('[MQTT-4.3.3-9] an incoming QoS 2 message acknowledged with PUBREC before a restart is not delivered again when resent after it', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    let { port } = await brokers.start();
    const sub = (await connect(port, v5('q2-sub'))).client;
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'q2', qos: 1 }] });
    await sub.next(9);
    sub.send({ type: 14, reasonCode: 0 });
    await sub.waitClosed();
    const pub = (await connect(port, v5('q2-pub'))).client;
    pub.send({ type: 3, topic: 'q2', payload: Buffer.from('once'), qos: 2, retain: false, dup: false, packetId: 7 });
    assert.equal(((await pub.next(5)) as PubAckLikePacket).packetId, 7);
    pub.destroy(); // PUBREL never sent
    await brokers.stop();
    ({ port } = await brokers.start());
    const again = await connect(port, v5('q2-pub'));
    assert.equal(again.connack.sessionPresent, true);
    again.client.send({ type: 3, topic: 'q2', payload: Buffer.from('once'), qos: 2, retain: false, dup: true, packetId: 7 });
    await again.client.next(5);
    again.client.send({ type: 6, packetId: 7 });
    const comp = (await again.client.next(7)) as PubAckLikePacket;
    assert.equal(comp.reasonCode ?? 0, 0, 'the packet id was known after the restart');
    const back = (await connect(port, v5('q2-sub'))).client;
    const got = (await back.collect(300, 3)) as PublishPacket[];
    assert.deepEqual(got.map((p) => p.payload.toString()), ['once'], 'delivered exactly once');
    again.client.destroy();
    back.destroy();
  });

  it('a message queued for many sessions is stored once; QoS 0 and clean sessions never reach the file', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir, { queueQos0: false });
    const { port } = await brokers.start();
    for (const id of ['o1', 'o2', 'o3']) {
      const c = (await connect(port, v5(id))).client;
      c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'fan/#', qos: 1 }] });
      await c.next(9);
      c.send({ type: 14, reasonCode: 0 });
      await c.waitClosed();
    }
    const clean = (await connect(port, { clientId: 'clean', protocolVersion: 4, clean: true })).client;
    clean.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'fan/#', qos: 1 }] });
    await clean.next(9);
    const pub = (await connect(port, { clientId: 'p', protocolVersion: 4 })).client;
    pub.send({ type: 3, topic: 'fan/1', payload: Buffer.from('one'), qos: 1, retain: false, dup: false, packetId: 1 });
    await pub.next(4);
    // The durability contract: when PUBACK arrives, the rows are in the file.
    assert.deepEqual({ ...rowCounts(dir), incoming_qos2: undefined }, { sessions: 3, subscriptions: 3, messages: 1, queue: 3, inflight: 0, retained: 0, incoming_qos2: undefined });
    // QoS 0 to offline sessions is not queued (queueQos0 false) and nothing about it is written.
    for (let i = 0; i < 20; i++) pub.send({ type: 3, topic: 'fan/0', payload: Buffer.from('zero'), qos: 0, retain: false, dup: false });
    await pub.sync();
    await (clean as RawClient).collect(50);
    const counts = rowCounts(dir);
    assert.equal(counts.messages, 1);
    assert.equal(counts.queue, 3);
    assert.equal(counts.sessions, 3, 'the clean session is not stored');
    clean.destroy();
    pub.destroy();
  });

  it('group commit: a burst of 200 QoS 1 publishes is committed in a few transactions, not 200', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    const { broker, port } = await brokers.start();
    const sub = (await connect(port, v5('burst-sub'))).client;
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'burst', qos: 1 }] });
    await sub.next(9);
    sub.send({ type: 14, reasonCode: 0 });
    await sub.waitClosed();
    const stats = (broker.core.store as SqliteSessionStore).storage.stats;
    const pub = (await connect(port, { clientId: 'burst-pub', protocolVersion: 4 })).client;
    const before = { ...stats };
    const burst = Buffer.concat(Array.from({ length: 200 }, (_, i) => encodePacket({ type: 3, topic: 'burst', payload: Buffer.from(`m${i}`), qos: 1, retain: false, dup: false, packetId: i + 1 }, 4)));
    pub.sendBytes(burst);
    for (let i = 0; i < 200; i++) await pub.next(4);
    const commits = stats.commits - before.commits;
    t.diagnostic(`200 publishes: ${commits} commits, ${stats.writes - before.writes} rows written`);
    assert.ok(commits >= 1 && commits <= 10, `${commits} commits`);
    assert.equal(queuedOnDisk(dir), 200);
    pub.destroy();
  });

  it('a message delivered and acknowledged leaves no rows behind (in-flight row and message row deleted)', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    const { broker, port } = await brokers.start();
    const sub = (await connect(port, v5('quick-sub'))).client;
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'quick', qos: 1 }] });
    await sub.next(9);
    const stats = (broker.core.store as SqliteSessionStore).storage.stats;
    const pub = (await connect(port, { clientId: 'quick-pub', protocolVersion: 4 })).client;
    pub.send({ type: 3, topic: 'quick', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 1 });
    await pub.next(4);
    const m = (await sub.next(3)) as PublishPacket;
    sub.send({ type: 4, packetId: m.packetId! });
    await sub.sync();
    await new Promise((r) => setTimeout(r, 20));
    const counts = rowCounts(dir);
    assert.equal(counts.inflight, 0);
    assert.equal(counts.messages, 0, 'the acknowledged message row is gone');
    assert.ok(stats.commits > 0);
    pub.destroy();
    sub.destroy();
  });
});
