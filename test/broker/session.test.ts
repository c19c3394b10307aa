// Sessions over real TCP: clean session / clean start, session expiry set at CONNECT and
// DISCONNECT, the offline queue (bounds, overflow, QoS 0) and redelivery of in-flight messages.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DisconnectPacket, PublishPacket } from '../../src/protocol/packets.js';
import { delay, eventually, payloads, publishes, quietPublishes, setup, type Harness } from '../helpers/harness.js';
import type { RawClient } from '../helpers/raw-client.js';

async function disconnect(c: RawClient): Promise<void> {
  c.send({ type: 14 });
  await c.waitClosed();
}

/** Publishes `n` messages `prefix0..` from the application and waits until routed. */
function publishMany(h: Harness, topic: string, n: number, qos: 0 | 1 | 2, prefix = 'm'): void {
  for (let i = 0; i < n; i++) h.broker.publish(topic, `${prefix}${i}`, { qos });
}

describe('sessions', () => {
  it('[MQTT-3.1.2-6] 3.1.1 clean session 1: a fresh session, dropped at disconnect', async (t) => {
    const h = await setup(t);
    const c = await h.subscriber('cs/#', 1, { clientId: 'cs1', clean: true });
    assert.equal(h.broker.inspect.counts().subscriptions, 1);
    await disconnect(c);
    assert.equal(h.broker.inspect.hasSession('cs1'), false, 'session gone');
    assert.equal(h.broker.inspect.counts().subscriptions, 0, 'subscriptions gone');
    publishMany(h, 'cs/a', 2, 1);
    const { client, connack } = await h.connect({ clientId: 'cs1', clean: false });
    assert.equal(connack.sessionPresent, false);
    assert.deepEqual(await quietPublishes(client), [], 'nothing was queued');
  });

  it('[MQTT-3.1.2-4] [MQTT-3.1.2-5] 3.1.1 clean session 0: subscriptions and queued messages survive a reconnect', async (t) => {
    const h = await setup(t);
    const c = await h.subscriber(['p/a', 'p/b'], 2, { clientId: 'p0', clean: false });
    await disconnect(c);
    assert.equal(h.broker.inspect.counts().subscriptions, 2);
    h.broker.publish('p/a', 'one', { qos: 1 });
    h.broker.publish('p/b', 'two', { qos: 2 });
    h.broker.publish('p/a', 'three', { qos: 1 });
    const { client, connack } = await h.connect({ clientId: 'p0', clean: false });
    assert.equal(connack.sessionPresent, true);
    const got = await publishes(client, 3);
    assert.deepEqual(payloads(got), ['one', 'two', 'three']);
    assert.deepEqual(got.map((p) => p.qos), [1, 2, 1]);
    // Still subscribed.
    h.broker.publish('p/b', 'live', { qos: 0 });
    assert.equal((await client.next(3)).type, 3);
  });

  it('3.1 clean session 0 works like 3.1.1', async (t) => {
    const h = await setup(t);
    const c = await h.subscriber('v3/#', 1, { clientId: 'v3', clean: false, protocolVersion: 3 });
    await disconnect(c);
    h.broker.publish('v3/x', 'queued', { qos: 1 });
    const { client, connack } = await h.connect({ clientId: 'v3', clean: false, protocolVersion: 3 });
    assert.equal(connack.sessionPresent, false, '3.1 has no Session Present flag: the queued message shows the resume');
    assert.deepEqual(payloads(await publishes(client, 1)), ['queued']);
  });

  it('[MQTT-3.1.2-4] 5.0 Clean Start 1 discards the old session; Clean Start 0 resumes it', async (t) => {
    const h = await setup(t);
    const exp = { sessionExpiryInterval: 300 };
    const a = await h.subscriber('cs5/old', 1, { clientId: 'cs5', clean: false, protocolVersion: 5, properties: exp });
    await disconnect(a);
    h.broker.publish('cs5/old', 'queued', { qos: 1 });
    // Resume: queued message and subscription are there.
    const { client: b, connack: cb } = await h.connect({ clientId: 'cs5', clean: false, protocolVersion: 5, properties: exp });
    assert.equal(cb.sessionPresent, true);
    assert.deepEqual(payloads(await publishes(b, 1)), ['queued']);
    await disconnect(b);
    h.broker.publish('cs5/old', 'queued-again', { qos: 1 });
    // Clean Start 1: nothing of the old session.
    const { client: c, connack: cc } = await h.connect({ clientId: 'cs5', clean: true, protocolVersion: 5, properties: exp });
    assert.equal(cc.sessionPresent, false);
    assert.equal(h.broker.inspect.counts().subscriptions, 0);
    assert.deepEqual(await quietPublishes(c), []);
    h.broker.publish('cs5/old', 'after', { qos: 1 });
    assert.deepEqual(await quietPublishes(c), [], 'old subscription gone');
  });

  it('5.0 Session Expiry 0 (absent): the session ends at disconnect even with Clean Start 0', async (t) => {
    const h = await setup(t);
    const a = await h.subscriber('e0/#', 1, { clientId: 'e0', clean: false, protocolVersion: 5 });
    await disconnect(a);
    assert.equal(h.broker.inspect.hasSession('e0'), false);
    assert.equal(h.broker.inspect.counts().subscriptions, 0);
    const { connack } = await h.connect({ clientId: 'e0', clean: false, protocolVersion: 5 });
    assert.equal(connack.sessionPresent, false);
  });

  it('[MQTT-3.14.2-2] DISCONNECT with Session Expiry > 0 after 0 in CONNECT: DISCONNECT 0x82, will published', async (t) => {
    const h = await setup(t);
    const watcher = await h.subscriber('w/#');
    const c = await h.connected({ clientId: 'dx', protocolVersion: 5, will: { topic: 'w/dx', payload: Buffer.from('w'), qos: 0, retain: false } });
    c.send({ type: 14, reasonCode: 0, properties: { sessionExpiryInterval: 60 } });
    const d = (await c.next(14)) as DisconnectPacket;
    assert.equal(d.reasonCode, 0x82);
    await c.waitClosed();
    assert.equal(h.broker.inspect.hasSession('dx'), false, 'the session still ended');
    assert.deepEqual(payloads(await publishes(watcher, 1)), ['w']);
  });

  it('DISCONNECT can change a nonzero Session Expiry (to 0: ends now; larger: kept longer)', async (t) => {
    const h = await setup(t);
    const a = await h.connected({ clientId: 'dz', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 60 } });
    a.send({ type: 14, reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    await a.waitClosed();
    assert.equal(h.broker.inspect.hasSession('dz'), false);
    const b = await h.connected({ clientId: 'dl', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 60 } });
    const before = Date.now();
    b.send({ type: 14, reasonCode: 0, properties: { sessionExpiryInterval: 600 } });
    await b.waitClosed();
    await delay(10);
    const s = h.broker.inspect.session('dl');
    assert.equal(s?.expiryInterval, 600);
    assert.ok(s.expiresAt! - before >= 599_000);
  });

  it('maxSessionExpiry caps the requested Session Expiry (CONNACK says so) and a DISCONNECT one too', async (t) => {
    const h = await setup(t, { maxSessionExpiry: 10 });
    const { client, connack } = await h.connect({ clientId: 'cap', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } });
    assert.equal(connack.properties?.sessionExpiryInterval, 10);
    client.send({ type: 14, reasonCode: 0, properties: { sessionExpiryInterval: 7200 } });
    await client.waitClosed();
    assert.equal(h.broker.inspect.session('cap')?.expiryInterval, 10);
    const { connack: under } = await h.connect({ clientId: 'under', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 5 } });
    assert.equal(under.properties?.sessionExpiryInterval, undefined, 'not sent when the request was granted');
  });
});

describe('offline queue', () => {
  it('QoS 1 and 2 are queued for an offline session, QoS 0 is not (default)', async (t) => {
    const h = await setup(t);
    const c = await h.subscriber('q/#', 2, { clientId: 'q', clean: false });
    await disconnect(c);
    h.broker.publish('q/a', 'qos0', { qos: 0 });
    h.broker.publish('q/a', 'qos1', { qos: 1 });
    h.broker.publish('q/a', 'qos2', { qos: 2 });
    const { client } = await h.connect({ clientId: 'q', clean: false });
    const got = await publishes(client, 2);
    assert.deepEqual(payloads(got), ['qos1', 'qos2']);
    assert.deepEqual(await quietPublishes(client), []);
  });

  it('queueQos0: true queues QoS 0 too, in order', async (t) => {
    const h = await setup(t, { queueQos0: true });
    const c = await h.subscriber('q/#', 2, { clientId: 'q', clean: false });
    await disconnect(c);
    h.broker.publish('q/a', 'qos0', { qos: 0 });
    h.broker.publish('q/a', 'qos1', { qos: 1 });
    h.broker.publish('q/a', 'qos0b', { qos: 0 });
    const { client } = await h.connect({ clientId: 'q', clean: false });
    const got = await publishes(client, 3);
    assert.deepEqual(payloads(got), ['qos0', 'qos1', 'qos0b']);
    assert.deepEqual(got.map((p) => p.qos), [0, 1, 0]);
  });

  it('maxQueuedMessages bounds the queue; drop-oldest (default) keeps the newest and counts the drops', async (t) => {
    const h = await setup(t, { maxQueuedMessages: 3 });
    const c = await h.subscriber('q/#', 1, { clientId: 'q', clean: false });
    await disconnect(c);
    publishMany(h, 'q/a', 5, 1);
    assert.equal(h.broker.inspect.counts().droppedMessages, 2);
    const { client } = await h.connect({ clientId: 'q', clean: false });
    assert.deepEqual(payloads(await publishes(client, 3)), ['m2', 'm3', 'm4']);
    assert.deepEqual(await quietPublishes(client), []);
  });

  it('queueOverflow: drop-newest keeps the oldest and counts the drops', async (t) => {
    const h = await setup(t, { maxQueuedMessages: 3, queueOverflow: 'drop-newest' });
    const c = await h.subscriber('q/#', 1, { clientId: 'q', clean: false });
    await disconnect(c);
    publishMany(h, 'q/a', 5, 1);
    assert.equal(h.broker.inspect.counts().droppedMessages, 2);
    const { client } = await h.connect({ clientId: 'q', clean: false });
    assert.deepEqual(payloads(await publishes(client, 3)), ['m0', 'm1', 'm2']);
    assert.deepEqual(await quietPublishes(client), []);
  });

  it('the queue is delivered in order on reconnect (200 messages from a client, QoS 1 and 2 mixed)', async (t) => {
    const h = await setup(t);
    const c = await h.subscriber('order/#', 2, { clientId: 'ord', clean: false });
    await disconnect(c);
    const pub = await h.connected();
    for (let i = 0; i < 200; i++) {
      pub.send({ type: 3, topic: `order/${i % 3}`, payload: Buffer.from(String(i)), qos: (1 + (i % 2)) as 1 | 2, packetId: i + 1, retain: false, dup: false });
    }
    await pub.sync();
    const { client } = await h.connect({ clientId: 'ord', clean: false });
    const got: PublishPacket[] = [];
    for (let i = 0; i < 200; i++) {
      const p = (await client.next(3)) as PublishPacket;
      got.push(p);
      if (p.qos === 1) client.send({ type: 4, packetId: p.packetId! });
      else client.send({ type: 5, packetId: p.packetId! });
    }
    assert.deepEqual(payloads(got), Array.from({ length: 200 }, (_, i) => String(i)));
  });

  it('[MQTT-4.4.0-1] unacknowledged QoS 1/2 messages are resent first on resume, with DUP set; then PUBREL; then the queue', async (t) => {
    const h = await setup(t);
    const c = await h.subscriber('inf/#', 2, { clientId: 'inf', clean: false });
    h.broker.publish('inf/a', 'q1-unacked', { qos: 1 });
    h.broker.publish('inf/a', 'q2-unacked', { qos: 2 });
    h.broker.publish('inf/a', 'q2-pubrec', { qos: 2 });
    const first = await publishes(c, 3);
    assert.ok(first.every((p) => !p.dup));
    // Only the third gets PUBREC: the broker answers PUBREL, which we never complete.
    c.send({ type: 5, packetId: first[2]!.packetId! });
    const rel = await c.next(6);
    assert.equal((rel as { packetId: number }).packetId, first[2]!.packetId);
    c.destroy(); // connection lost
    await eventually(() => !h.broker.inspect.isConnected('inf'));
    h.broker.publish('inf/a', 'queued', { qos: 1 });
    const { client, connack } = await h.connect({ clientId: 'inf', clean: false });
    assert.equal(connack.sessionPresent, true);
    await client.sync();
    assert.deepEqual(client.packets.map((p) => p.type), [3, 3, 6, 3, 13].slice(0, client.packets.length), 'order: PUBLISH, PUBLISH, PUBREL, queued PUBLISH');
    assert.deepEqual(client.packets.map((p) => p.type), [3, 3, 6, 3], 'all four arrived before the PINGRESP, in that order');
    const again = await publishes(client, 3);
    assert.deepEqual(payloads(again), ['q1-unacked', 'q2-unacked', 'queued']);
    assert.deepEqual(again.map((p) => p.dup), [true, true, false]);
    assert.deepEqual(again.slice(0, 2).map((p) => p.packetId), [first[0]!.packetId, first[1]!.packetId], 'same packet ids');
    const rel2 = (await client.next(6)) as { packetId: number };
    assert.equal(rel2.packetId, first[2]!.packetId, 'PUBREL resent for the released message');
    // Completing the flows empties the in-flight window.
    client.send({ type: 4, packetId: again[0]!.packetId! });
    client.send({ type: 5, packetId: again[1]!.packetId! });
    await client.next(6);
    client.send({ type: 7, packetId: again[1]!.packetId! });
    client.send({ type: 7, packetId: rel2.packetId });
    client.send({ type: 4, packetId: again[2]!.packetId! });
    await client.sync();
    assert.equal(h.broker.inspect.session('inf')?.inflight, 0);
  });

  it('[MQTT-4.3.3-9] an incoming QoS 2 PUBLISH resent after a reconnect (PUBREC sent, PUBREL not yet) is not delivered twice', async (t) => {
    const h = await setup(t);
    const sub = await h.subscriber('in2/#', 2);
    const p = { type: 3 as const, topic: 'in2/x', payload: Buffer.from('once'), qos: 2 as const, packetId: 42, retain: false, dup: false };
    const a = await h.connected({ clientId: 'in2', clean: false });
    a.send(p);
    await a.next(5);
    a.destroy();
    await eventually(() => !h.broker.inspect.isConnected('in2'));
    const { client: b, connack } = await h.connect({ clientId: 'in2', clean: false });
    assert.equal(connack.sessionPresent, true);
    b.send({ ...p, dup: true });
    assert.equal(((await b.next(5)) as { packetId: number }).packetId, 42);
    b.send({ type: 6, packetId: 42 });
    await b.next(7);
    await sub.sync();
    assert.deepEqual(payloads(await publishes(sub, 1)), ['once']);
    assert.deepEqual(await quietPublishes(sub, 50), []);
  });
});
