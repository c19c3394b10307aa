// Encoding shared across a fan-out, on the in-memory core: each subscriber gets the message that was
// routed to it, with its own packet id, also when another publish starts in the middle of a fan-out.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PubAckLikePacket, PublishPacket } from '../../src/protocol/packets.js';
import { FakeCore } from '../helpers/fake-core.js';

const publish = (topic: string, payload: string, qos: 0 | 1 = 0, packetId?: number): PublishPacket => ({
  type: 3,
  topic,
  payload: Buffer.from(payload),
  qos,
  packetId,
  retain: false,
  dup: false,
});

describe('fan-out encoding', () => {
  it('a will published while a fan-out is being delivered carries its own topic and payload', () => {
    const f = new FakeCore();
    // The first subscriber's connection fails on its first PUBLISH, as a write to a reset socket does, which
    // closes it and publishes its will in the middle of the fan-out.
    const dying = f.connect({ clientId: 'dying', will: { topic: 'will', payload: Buffer.from('gone'), qos: 0, retain: false } });
    dying.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'news', qos: 0 }] });
    const output = (dying.channel as unknown as { output: { write(data: Buffer): void } }).output;
    const write = output.write.bind(output);
    output.write = (data) => (data[0]! >> 4 === 3 ? dying.drop() : write(data));
    const watchers = ['w1', 'w2'].map((clientId) => {
      const w = f.connect({ clientId });
      w.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'news', qos: 0 }, { topicFilter: 'will', qos: 0 }] });
      w.take();
      return w;
    });
    f.connect({ clientId: 'pub' }).send(publish('news', 'headline'));
    assert.ok(dying.closed, 'the failing subscriber was closed');
    for (const w of watchers) {
      const got = (w.take(3) as PublishPacket[]).map((p) => `${p.topic}=${p.payload.toString()}`).sort();
      assert.deepEqual(got, ['news=headline', 'will=gone']);
    }
  });

  it('QoS 1 to one subscriber and to several: each copy has its own packet id [MQTT-2.2.1-3]', () => {
    const f = new FakeCore();
    const subs = ['s1', 's2', 's3'].map((clientId) => f.connect({ clientId }));
    subs[0]!.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'one', qos: 1 }, { topicFilter: 'all', qos: 1 }] });
    for (const s of subs.slice(1)) s.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'all', qos: 1 }] });
    // Different packet ids per subscriber: s1 has one more in flight than the others.
    const pub = f.connect({ clientId: 'pub' });
    pub.send(publish('one', 'only', 1, 1));
    pub.send(publish('all', 'every', 1, 2));
    assert.deepEqual((pub.take(4) as PubAckLikePacket[]).map((p) => p.packetId), [1, 2]);
    const [first, second] = subs[0]!.take(3) as PublishPacket[];
    assert.deepEqual([first!.topic, first!.payload.toString(), first!.packetId, first!.dup], ['one', 'only', 1, false]);
    assert.deepEqual([second!.topic, second!.payload.toString(), second!.packetId], ['all', 'every', 2]);
    for (const s of subs.slice(1)) {
      const [p] = s.take(3) as PublishPacket[];
      assert.deepEqual([p!.topic, p!.payload.toString(), p!.packetId, p!.qos], ['all', 'every', 1, 1]);
    }
  });

  it('the payload a QoS 1 message was published with is what a subscriber gets, even if the input buffer is reused', () => {
    const f = new FakeCore();
    const sub = f.connect({ clientId: 'sub', clean: false });
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'q', qos: 1 }] });
    sub.drop(); // offline: the message is queued, and must own its bytes
    const pub = f.connect({ clientId: 'pub' });
    const input = Buffer.from([0x32, 8, 0, 1, 0x71, 0, 7, 0x61, 0x62, 0x63]); // PUBLISH q, QoS 1, id 7, "abc"
    pub.channel.receive(input);
    input.fill(0x7a, 7); // the transport's read buffer is reused for the next read
    const back = f.connect({ clientId: 'sub', clean: false });
    const [p] = back.take(3) as PublishPacket[];
    assert.equal(p!.payload.toString(), 'abc');
  });

  it('a 5.0 client whose Maximum Packet Size is under 4 bytes gets no PUBACK [MQTT-3.1.2-25]', () => {
    const f = new FakeCore();
    const tiny = f.connect({ clientId: 'tiny', protocolVersion: 5, properties: { maximumPacketSize: 3 } });
    tiny.take();
    tiny.send(publish('x', 'y', 1, 9));
    assert.deepEqual(tiny.take(4), []);
    const normal = f.connect({ clientId: 'normal', protocolVersion: 5 });
    normal.take();
    normal.send(publish('x', 'y', 1, 9));
    assert.deepEqual(normal.take(4).map((p) => (p as PubAckLikePacket).packetId), [9]);
  });
});

describe('route remembered per publisher', () => {
  it('a subscription made or removed between two PUBLISHes to the same topic is seen by the second', () => {
    const f = new FakeCore();
    const pub = f.connect({ clientId: 'pub' });
    const early = f.connect({ clientId: 'early' });
    early.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'room/+', qos: 0 }] });
    pub.send(publish('room/1', 'one'));
    const late = f.connect({ clientId: 'late' });
    late.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'room/1', qos: 0 }] });
    pub.send(publish('room/1', 'two'));
    early.send({ type: 10, packetId: 2, topicFilters: ['room/+'] });
    pub.send(publish('room/1', 'three'));
    const payloads = (c: typeof pub) => (c.take(3) as PublishPacket[]).map((p) => p.payload.toString());
    assert.deepEqual(payloads(early), ['one', 'two']);
    assert.deepEqual(payloads(late), ['two', 'three']);
  });

  it('two publishers alternating between topics each reach the right subscribers', () => {
    const f = new FakeCore();
    const subs = ['a', 'b'].map((t) => {
      const s = f.connect({ clientId: `sub-${t}` });
      s.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: t, qos: 0 }] });
      return s;
    });
    const pubs = [f.connect({ clientId: 'p1' }), f.connect({ clientId: 'p2' })];
    for (let i = 0; i < 6; i++) pubs[i % 2]!.send(publish(i % 3 === 0 ? 'a' : 'b', String(i)));
    assert.deepEqual((subs[0]!.take(3) as PublishPacket[]).map((p) => p.payload.toString()), ['0', '3']);
    assert.deepEqual((subs[1]!.take(3) as PublishPacket[]).map((p) => p.payload.toString()), ['1', '2', '4', '5']);
  });
});

describe('fan-out to distinct and to overlapping subscriptions', () => {
  it('[MQTT-3.3.5-1] a client with overlapping filters gets one copy at the highest QoS, others theirs, before and after it drops one filter', () => {
    const f = new FakeCore();
    const both = f.connect({ clientId: 'both' });
    both.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'a/+', qos: 0 }, { topicFilter: 'a/#', qos: 1 }] });
    const other = f.connect({ clientId: 'other' });
    other.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'a/b', qos: 0 }] });
    const third = f.connect({ clientId: 'third' });
    third.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: '#', qos: 1 }] });
    const pub = f.connect({ clientId: 'pub' });
    pub.send(publish('a/b', 'x', 1, 1));
    const got = (c: typeof pub) => (c.take(3) as PublishPacket[]).map((p) => `${p.payload.toString()}@${p.qos}`);
    assert.deepEqual(got(both), ['x@1']);
    assert.deepEqual(got(other), ['x@0']);
    assert.deepEqual(got(third), ['x@1']);
    both.send({ type: 10, packetId: 2, topicFilters: ['a/#'] });
    pub.send(publish('a/b', 'y', 1, 2));
    assert.deepEqual(got(both), ['y@0']);
    assert.deepEqual(got(other), ['y@0']);
    assert.deepEqual(got(third), ['y@1']);
  });
});

describe('connections remembered with a route', () => {
  it('a subscriber that goes offline, comes back, or is taken over between PUBLISHes to one topic gets each message on the right side', () => {
    const f = new FakeCore();
    const other = f.connect({ clientId: 'other' });
    other.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 't', qos: 1 }] });
    let sub = f.connect({ clientId: 'sub', clean: false });
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 't', qos: 1 }] });
    const pub = f.connect({ clientId: 'pub' });
    const payloads = (c: typeof pub) => (c.take(3) as PublishPacket[]).map((p) => p.payload.toString());
    pub.send(publish('t', 'm1', 1, 1));
    assert.deepEqual(payloads(sub), ['m1']);
    sub.send({ type: 4, packetId: 1 });
    sub.drop(); // offline: m2 waits in its session
    pub.send(publish('t', 'm2', 1, 2));
    sub = f.connect({ clientId: 'sub', clean: false });
    assert.deepEqual(payloads(sub), ['m2'], 'queued while offline, sent on resume [MQTT-3.1.2-5]');
    pub.send(publish('t', 'm3', 1, 3));
    assert.deepEqual(payloads(sub), ['m3'], 'the new connection gets it live');
    const takeover = f.connect({ clientId: 'sub', clean: false });
    assert.ok(sub.closed, 'the old connection was taken over [MQTT-3.1.4-3]');
    takeover.take(3); // m3 again (unacknowledged), DUP
    pub.send(publish('t', 'm4', 1, 4));
    assert.deepEqual(payloads(takeover), ['m4']);
    assert.deepEqual(payloads(other), ['m1', 'm2', 'm3', 'm4']);
  });
});
