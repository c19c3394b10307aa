// The timer rules once on the real clock, with short values, through the real timer adapter and TCP
// (their exact boundaries are tested on the fake clock in core-timers.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConnackPacket, PublishPacket } from '../../src/protocol/packets.js';
import { startBroker } from '../helpers/broker.js';
import { delay, eventually } from '../helpers/wait.js';
import { RawClient } from '../helpers/raw-client.js';

describe('timers on the real clock', () => {
  it('session expiry, will delay and message expiry of 1 s take effect after about 1 s', async (t) => {
    const { broker, port } = await startBroker();
    t.after(() => broker.close());
    const watcher = (await RawClient.connect(port, { clientId: 'watcher', protocolVersion: 5 })).client;
    t.after(() => watcher.destroy());
    watcher.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] });
    await watcher.next(9);

    // A client with a 1 s session, a will delayed 1 s, and a queued message expiring in 1 s.
    const { client: leaving } = await RawClient.connect(port, {
      clientId: 'leaving',
      protocolVersion: 5,
      properties: { sessionExpiryInterval: 1 },
      will: { topic: 'will/leaving', payload: Buffer.from('bye'), qos: 0, retain: false, properties: { willDelayInterval: 1 } },
    });
    leaving.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'inbox', qos: 1 }] });
    await leaving.next(9);
    leaving.destroy();
    await eventually(() => !broker.inspect.isConnected('leaving'), 1000, 'the broker to see the connection gone');
    const gone = Date.now();

    const { client: publisher } = await RawClient.connect(port, { clientId: 'pub', protocolVersion: 5 });
    t.after(() => publisher.destroy());
    publisher.send({ type: 3, topic: 'inbox', payload: Buffer.from('soon stale'), qos: 1, retain: false, dup: false, packetId: 1, properties: { messageExpiryInterval: 1 } });
    await publisher.next(4);
    assert.equal(broker.inspect.session('leaving')?.queued, 1, 'queued for the offline session');

    assert.deepEqual(await watcher.collect(600, 3), [], 'no will before its delay');
    await watcher.next(3, 2000);
    const willAfter = Date.now() - gone;
    assert.ok(willAfter >= 900, `will published after ${willAfter} ms`);
    await eventually(() => !broker.inspect.hasSession('leaving'), 2000, 'the session to expire');

    // A second session resumes within its expiry, but its queued message has expired by then.
    const { client: sub } = await RawClient.connect(port, { clientId: 'sub2', protocolVersion: 5, clean: true, properties: { sessionExpiryInterval: 60 } });
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'inbox2', qos: 1 }] });
    await sub.next(9);
    sub.destroy();
    await eventually(() => !broker.inspect.isConnected('sub2'), 1000, 'sub2 offline');
    publisher.send({ type: 3, topic: 'inbox2', payload: Buffer.from('stale'), qos: 1, retain: false, dup: false, packetId: 2, properties: { messageExpiryInterval: 1 } });
    publisher.send({ type: 3, topic: 'inbox2', payload: Buffer.from('fresh'), qos: 1, retain: false, dup: false, packetId: 3, properties: { messageExpiryInterval: 60 } });
    await publisher.next(4);
    await publisher.next(4);
    await delay(1200);
    const { client: back, connack } = await RawClient.connect(port, { clientId: 'sub2', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 60 } });
    t.after(() => back.destroy());
    assert.equal((connack as ConnackPacket).sessionPresent, true);
    const msg = (await back.next(3)) as PublishPacket;
    assert.equal(msg.payload.toString(), 'fresh', 'the expired message was never delivered');
    assert.ok((msg.properties?.messageExpiryInterval ?? 0) <= 59, 'the interval forwarded is the time remaining');
    const remaining = msg.properties?.messageExpiryInterval;
    assert.ok(remaining !== undefined && remaining >= 55, `the interval is forwarded at all (${remaining})`);
  });
});
