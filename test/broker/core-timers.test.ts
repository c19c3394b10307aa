// Timer rules of the broker core on a fake clock: connect timeout, keep alive, session expiry,
// will delay, message expiry. No sleeping: the clock is advanced by hand.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Channel } from '../../src/broker/channel.js';
import { PacketDecoder } from '../../src/protocol/decoder.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { ConnackPacket, DisconnectPacket, Packet, PublishPacket } from '../../src/protocol/packets.js';
import { FakeCore } from '../helpers/fake-core.js';

describe('core timers (fake clock)', () => {
  it('closes a connection that sends no CONNECT within connectTimeout', () => {
    const f = new FakeCore({ limits: { connectTimeout: 10_000 } });
    const c = f.open();
    f.advance(9_900);
    assert.equal(c.closed, false);
    f.advance(200);
    assert.equal(c.closed, true);
    assert.deepEqual(c.received, [], 'nothing is sent to a client that never said CONNECT');
  });

  it('[MQTT-3.1.2-24] disconnects after 1.5 x Keep Alive of silence, not before', () => {
    const f = new FakeCore();
    const c = f.connect({ keepAlive: 10 });
    assert.equal((c.take(2)[0] as ConnackPacket).reasonCode, 0);
    f.advance(14_900);
    assert.equal(c.closed, false, 'still open at 14.9 s');
    f.advance(300);
    assert.equal(c.closed, true, 'closed after 15 s');
  });

  it('any packet (PINGREQ) resets the keep alive timer; PINGREQ gets PINGRESP', () => {
    const f = new FakeCore();
    const c = f.connect({ keepAlive: 10 });
    for (let i = 0; i < 5; i++) {
      f.advance(10_000);
      c.send({ type: 12 });
      assert.equal(c.take(13).length, 1);
    }
    assert.equal(c.closed, false);
  });

  it('Keep Alive 0 disables the check', () => {
    const f = new FakeCore();
    const c = f.connect({ keepAlive: 0 });
    f.advance(24 * 3600_000, 60_000);
    assert.equal(c.closed, false);
  });

  it('5.0: keep alive timeout sends DISCONNECT 0x8D and publishes the will', () => {
    const f = new FakeCore();
    const watcher = f.connect({ clientId: 'w', protocolVersion: 5 });
    watcher.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] });
    const c = f.connect({ clientId: 'k', protocolVersion: 5, keepAlive: 2, will: { topic: 'will/k', payload: Buffer.from('gone'), qos: 0, retain: false } });
    f.advance(3_100);
    const d = c.take(14)[0] as DisconnectPacket;
    assert.equal(d.reasonCode, 0x8d);
    assert.equal(c.closed, true);
    const will = watcher.take(3)[0] as PublishPacket;
    assert.equal(will.topic, 'will/k');
    assert.equal(will.payload.toString(), 'gone');
  });

  it('5.0 session expiry: the session survives its interval and ends after it', () => {
    const f = new FakeCore();
    const c = f.connect({ clientId: 's', protocolVersion: 5, clean: true, properties: { sessionExpiryInterval: 60 } });
    c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 't', qos: 1 }] });
    c.drop();
    f.advance(59_000);
    assert.ok(f.inspect.hasSession('s'), 'session kept for 59 s');
    f.advance(2_000);
    assert.ok(!f.inspect.hasSession('s'), 'session gone after 60 s');
    assert.equal(f.inspect.counts().subscriptions, 0, 'its subscriptions are gone too');
  });

  it('5.0 Session Expiry 0xFFFFFFFF never expires', () => {
    const f = new FakeCore();
    const c = f.connect({ clientId: 'n', protocolVersion: 5, properties: { sessionExpiryInterval: 0xffffffff } });
    c.drop();
    f.advance(30 * 24 * 3600_000, 3600_000);
    assert.ok(f.inspect.hasSession('n'));
  });

  it('3.1.1 clean session 0: the session expires after sessionExpiry (default 2 h)', () => {
    const f = new FakeCore();
    const c = f.connect({ clientId: 'p', clean: false });
    c.drop();
    f.advance(2 * 3600_000 - 60_000, 60_000);
    assert.ok(f.inspect.hasSession('p'));
    f.advance(120_000, 60_000);
    assert.ok(!f.inspect.hasSession('p'));
  });

  it('5.0 Will Delay: the will waits, and a reconnect within the delay cancels it [MQTT-3.1.3-9]', () => {
    const f = new FakeCore();
    const watcher = f.connect({ clientId: 'w', protocolVersion: 5 });
    watcher.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] });
    const will = { topic: 'will/d', payload: Buffer.from('x'), qos: 0 as const, retain: false, properties: { willDelayInterval: 30 } };
    const c = f.connect({ clientId: 'd', protocolVersion: 5, clean: false, will, properties: { sessionExpiryInterval: 300 } });
    c.drop();
    f.advance(20_000);
    assert.equal(watcher.take(3).length, 0, 'no will before the delay');
    const again = f.connect({ clientId: 'd', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } });
    assert.equal((again.take(2)[0] as ConnackPacket).sessionPresent, true);
    f.advance(60_000);
    assert.equal(watcher.take(3).length, 0, 'the reconnect cancelled the will');
  });

  it('[MQTT-3.1.3-9] a takeover that resumes the session (Clean Start 0) within the Will Delay cancels the old connection\'s will', () => {
    const f = new FakeCore();
    const watcher = f.connect({ clientId: 'w', protocolVersion: 5 });
    watcher.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] });
    const will = { topic: 'will/t', payload: Buffer.from('x'), qos: 0 as const, retain: false, properties: { willDelayInterval: 30 } };
    const first = f.connect({ clientId: 't', protocolVersion: 5, will, properties: { sessionExpiryInterval: 300 } });
    const second = f.connect({ clientId: 't', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } });
    assert.equal(first.closed, true, 'the first connection was taken over');
    assert.equal((second.take(2)[0] as ConnackPacket).sessionPresent, true);
    f.advance(60_000);
    assert.equal(watcher.take(3).length, 0, 'the will was cancelled, not just delayed');
  });

  it('5.0 Will Delay: published when the delay passes', () => {
    const f = new FakeCore();
    const watcher = f.connect({ clientId: 'w', protocolVersion: 5 });
    watcher.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] });
    const will = { topic: 'will/d', payload: Buffer.from('x'), qos: 0 as const, retain: false, properties: { willDelayInterval: 30 } };
    const c = f.connect({ clientId: 'd', protocolVersion: 5, will, properties: { sessionExpiryInterval: 300 } });
    c.drop();
    f.advance(29_000);
    assert.equal(watcher.take(3).length, 0);
    f.advance(2_000);
    assert.equal(watcher.take(3).length, 1);
  });

  it('5.0 Will Delay longer than the session: the session end publishes it early', () => {
    const f = new FakeCore();
    const watcher = f.connect({ clientId: 'w', protocolVersion: 5 });
    watcher.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] });
    const will = { topic: 'will/e', payload: Buffer.from('x'), qos: 0 as const, retain: false, properties: { willDelayInterval: 3600 } };
    const c = f.connect({ clientId: 'e', protocolVersion: 5, will, properties: { sessionExpiryInterval: 10 } });
    c.drop();
    f.advance(9_000);
    assert.equal(watcher.take(3).length, 0);
    f.advance(2_000);
    assert.equal(watcher.take(3).length, 1, 'published at session end (10 s), not after 1 h');
  });

  it('Message Expiry: a queued message whose interval passed is never delivered; the rest carry the time remaining', () => {
    const f = new FakeCore();
    const sub = f.connect({ clientId: 'sub', protocolVersion: 5, clean: true, properties: { sessionExpiryInterval: 3600 } });
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'x/#', qos: 1 }] });
    sub.drop();
    const pub = f.connect({ clientId: 'pub', protocolVersion: 5 });
    pub.send({ type: 3, topic: 'x/short', payload: Buffer.from('1'), qos: 1, retain: false, dup: false, packetId: 1, properties: { messageExpiryInterval: 5 } });
    pub.send({ type: 3, topic: 'x/long', payload: Buffer.from('2'), qos: 1, retain: false, dup: false, packetId: 2, properties: { messageExpiryInterval: 100 } });
    f.advance(10_000);
    const back = f.connect({ clientId: 'sub', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } });
    const got = back.take(3) as PublishPacket[];
    assert.deepEqual(got.map((p) => p.topic), ['x/long']);
    assert.equal(got[0]!.properties?.messageExpiryInterval, 90);
  });

  it('offlineMessageExpiry drops queued messages older than the limit', () => {
    const f = new FakeCore({ limits: { offlineMessageExpiry: 60 } });
    const sub = f.connect({ clientId: 'sub', clean: false });
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'q', qos: 1 }] });
    sub.drop();
    const pub = f.connect({ clientId: 'pub' });
    pub.send({ type: 3, topic: 'q', payload: Buffer.from('old'), qos: 1, retain: false, dup: false, packetId: 1 });
    f.advance(50_000);
    pub.send({ type: 3, topic: 'q', payload: Buffer.from('new'), qos: 1, retain: false, dup: false, packetId: 2 });
    f.advance(20_000);
    const back = f.connect({ clientId: 'sub', clean: false });
    assert.deepEqual((back.take(3) as PublishPacket[]).map((p) => p.payload.toString()), ['new']);
  });

  it('[MQTT-3.1.2-24] each client is cut 1.5 x its own Keep Alive after its own last packet, however the deadlines interleave', () => {
    const f = new FakeCore();
    const start = f.clock.time;
    // Keep Alive k s; the client's last PINGREQ at `last` ms: it must be closed in (last + 1500 k, last + 1500 k + 200].
    const plan = [
      { keepAlive: 1, last: 0 },
      { keepAlive: 2, last: 2_900 },
      { keepAlive: 3, last: 1_000 },
      { keepAlive: 4, last: 5_000 },
      { keepAlive: 10, last: 7_300 },
      { keepAlive: 10, last: 0 },
    ].map((p, i) => ({ ...p, c: f.connect({ clientId: `k${i}`, keepAlive: p.keepAlive }), closedAt: -1 }));
    for (let t = 0; t <= 30_000; t += 100) {
      f.clock.time = start + t;
      for (const p of plan) {
        // Before its last packet, a client pings often enough (every 0.5 x Keep Alive).
        if (!p.c.closed && t <= p.last && (t === p.last || t % (p.keepAlive * 500) === 0)) p.c.send({ type: 12 });
      }
      f.core.tick();
      for (const p of plan) if (p.c.closed && p.closedAt < 0) p.closedAt = t;
    }
    for (const [i, p] of plan.entries()) {
      const deadline = p.last + p.keepAlive * 1500;
      assert.ok(p.closedAt > deadline && p.closedAt <= deadline + 200, `k${i} (Keep Alive ${p.keepAlive} s, last packet at ${p.last} ms) closed at ${p.closedAt} ms`);
    }
  });

  it('a tick looks only at connections with a deadline due, not at every idle one', () => {
    const f = new FakeCore({ limits: { connectTimeout: 10_000 } });
    const clients = Array.from({ length: 1000 }, (_, i) => f.connect({ clientId: `idle${i}`, keepAlive: 60 }));
    const tick = Channel.prototype.tick;
    let looks = 0;
    Channel.prototype.tick = function (this: Channel, now: number) {
      looks++;
      tick.call(this, now);
    };
    try {
      f.advance(9_500, 250);
      assert.equal(looks, 0, 'none looked at before its connect timeout (10 s)');
      f.advance(1_000, 250);
      assert.equal(looks, 1000, 'each looked at once at its connect timeout, where it files its keep-alive deadline');
      f.advance(79_000, 250);
      assert.equal(looks, 1000, 'none looked at again before its keep-alive deadline (90 s)');
      f.advance(1_000, 250);
      assert.equal(looks, 2000, 'each looked at once more, when its deadline came');
      assert.ok(clients.every((c) => c.closed));
    } finally {
      Channel.prototype.tick = tick;
    }
  });

  it('a client that comes and goes leaves no trail of timer entries (its session expiry stays filed once)', () => {
    const f = new FakeCore({ limits: { sessionExpiry: 60 } });
    const wheels = {
      get channelTimers() { return { size: f.inspect.footprint().channelTimers }; },
      get sessionTimers() { return { size: f.inspect.footprint().sessionTimers }; },
    };
    for (let i = 0; i < 500; i++) {
      f.connect({ clientId: 'flappy', clean: false, keepAlive: 60 }).drop();
      f.advance(1_000, 1_000);
    }
    assert.ok(wheels.sessionTimers.size <= 2, `session expiry entries: ${wheels.sessionTimers.size}`);
    assert.ok(wheels.channelTimers.size <= 20, `channel entries: ${wheels.channelTimers.size} (connect timeouts of the last 10 s)`);
    const many = Array.from({ length: 1000 }, (_, i) => f.connect({ clientId: `k${i}`, keepAlive: 60 }));
    assert.ok(wheels.channelTimers.size <= 1020, `one entry per new connection, not two: ${wheels.channelTimers.size}`);
    f.advance(200_000, 1_000);
    assert.ok(many.every((c) => c.closed));
    assert.equal(f.inspect.hasSession('flappy'), false, 'the session expired 60 s after its last visit');
    assert.deepEqual([wheels.sessionTimers.size, wheels.channelTimers.size], [0, 0], 'nothing left once all is over');
  });

  it('a subscriber whose output stays over maxOutputBuffer loses QoS 0 messages (counted) and is cut after slowConsumerTimeout', () => {
    const f = new FakeCore({ limits: { maxOutputBuffer: 1000, slowConsumerTimeout: 5_000 } });
    let buffered = 0;
    let closed = false;
    const received: Packet[] = [];
    const decoder = new PacketDecoder({ protocolVersion: 4, role: 'client' });
    const channel = f.core.openChannel(
      {
        write: (data) => {
          buffered += data.length; // a client that reads nothing
          decoder.feed(data, (p) => received.push(p));
        },
        close: () => {
          closed = true;
        },
        bufferedBytes: () => buffered,
      },
      { remoteAddress: '127.0.0.1:1', listener: 'memory', secure: false },
    );
    channel.receive(encodePacket({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, clientId: 'slow' }, 4));
    channel.receive(encodePacket({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'big', qos: 0 }] }, 4));
    const pub = f.connect({ clientId: 'pub' });
    pub.send({ type: 3, topic: 'big', payload: Buffer.alloc(2000), qos: 0, retain: false, dup: false }); // over the mark
    pub.send({ type: 3, topic: 'big', payload: Buffer.alloc(10), qos: 0, retain: false, dup: false }); // dropped
    assert.equal(received.filter((p) => p.type === 3).length, 1);
    assert.equal(f.inspect.counts().droppedMessages, 1);
    f.advance(4_900);
    assert.equal(closed, false, 'still open before slowConsumerTimeout');
    f.advance(300);
    assert.equal(closed, true, 'cut once its output stayed over the mark for slowConsumerTimeout');
  });
});
