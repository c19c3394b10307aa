// What one client can make the broker hold: topic levels, subscriptions per client, retained topics.
// A broker open to untrusted clients must not let one SUBSCRIBE or PUBLISH grow its memory without bound
// (docs/configuration.md, "Limits"). Rules on the in-memory core; the memory figure through a real socket.
import assert from 'node:assert/strict';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { describe, it } from 'node:test';
import { createBroker } from '../../src/server/broker.js';
import { TopicRouter } from '../../src/broker/router.js';
import type { ConnackPacket, DisconnectPacket, PubAckLikePacket, PublishPacket, SubackPacket } from '../../src/protocol/packets.js';
import { FakeCore, type MemoryConnection } from '../helpers/fake-core.js';
import { payloads } from '../helpers/harness.js';
import { pub } from '../helpers/packets.js';

const levels = (n: number, prefix = 'a') => Array.from({ length: n }, (_, i) => (i === 0 ? prefix : 'l')).join('/');

function subscribe(c: MemoryConnection, filters: string[], packetId = 1): number[] {
  c.send({ type: 8, packetId, subscriptions: filters.map((topicFilter) => ({ topicFilter, qos: 1 })) });
  const [suback] = c.take(9) as SubackPacket[];
  assert.ok(suback, 'SUBACK expected');
  return suback.reasonCodes;
}

describe('maxTopicLevels (default 128, as EMQX; Mosquitto allows 200)', () => {
  it('a filter of 128 levels is granted, one of 129 gets SUBACK 0x8F (5.0) / 0x80 (3.1.1), the others in the packet are granted', () => {
    for (const [version, refused] of [[5, 0x8f], [4, 0x80]] as const) {
      const f = new FakeCore();
      const c = f.connect({ clientId: 's', protocolVersion: version });
      c.take(2);
      assert.deepEqual(subscribe(c, [levels(128), levels(129), 'x/#', `$share/g/${levels(129)}`]), [1, refused, 1, refused]);
      assert.equal(f.inspect.counts().subscriptions, 2, 'only the two granted filters are in the router');
      assert.equal(c.closed, false);
    }
  });

  it('5.0: a QoS 1 PUBLISH to a deeper topic gets PUBACK 0x90 Topic Name invalid and is not delivered; the connection stays', () => {
    const f = new FakeCore({ limits: { maxTopicLevels: 4 } });
    const s = f.connect({ clientId: 's', protocolVersion: 5 });
    s.take(2);
    subscribe(s, ['#']);
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.take(2);
    p.send(pub('a/b/c/d/e', 'deep', { qos: 1, packetId: 1 }));
    p.send(pub('a/b/c/d', 'ok', { qos: 1, packetId: 2 }));
    assert.deepEqual((p.take(4) as PubAckLikePacket[]).map((a) => [a.packetId, a.reasonCode ?? 0]), [[1, 0x90], [2, 0]]);
    assert.deepEqual(payloads(s.take(3)), ['ok']);
    assert.equal(p.closed, false);
  });

  it('5.0 QoS 0 and 3.1.1 at any QoS: a deeper topic closes the connection (DISCONNECT 0x90 for 5.0), nothing is delivered', () => {
    for (const [version, qos] of [[5, 0], [4, 0], [4, 1]] as const) {
      const f = new FakeCore({ limits: { maxTopicLevels: 4 } });
      const s = f.connect({ clientId: 's', protocolVersion: version });
      s.take(2);
      subscribe(s, ['#']);
      const p = f.connect({ clientId: 'p', protocolVersion: version });
      p.take(2);
      p.send(pub('a/b/c/d/', 'deep', { qos, packetId: qos ? 1 : undefined }));
      assert.equal(p.closed, true, `version ${version} QoS ${qos}: closed`);
      if (version === 5) assert.equal((p.take(14)[0] as DisconnectPacket).reasonCode, 0x90);
      assert.deepEqual(p.take(4), [], 'no PUBACK that would say it went out');
      assert.deepEqual(s.take(3), []);
    }
  });

  it('a will topic deeper than the limit refuses the CONNECT: 0x90 (5.0), 3 (3.1.1)', () => {
    for (const [version, code] of [[5, 0x90], [4, 3]] as const) {
      const f = new FakeCore({ limits: { maxTopicLevels: 2 } });
      const c = f.connect({ clientId: 'w', protocolVersion: version, will: { topic: 'a/b/c', payload: Buffer.from('x'), qos: 0, retain: false } });
      assert.equal((c.take(2)[0] as ConnackPacket).reasonCode, code);
      assert.equal(c.closed, true);
    }
  });

  it('a topic alias that names a deeper topic is refused on use too', () => {
    const f = new FakeCore({ limits: { maxTopicLevels: 2 } });
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.take(2);
    p.send(pub('a/b/c', 'x', { qos: 1, packetId: 1, properties: { topicAlias: 1 } }));
    p.send(pub('', 'y', { qos: 1, packetId: 2, properties: { topicAlias: 1 } }));
    assert.deepEqual((p.take(4) as PubAckLikePacket[]).map((a) => a.reasonCode), [0x90, 0x90]);
  });

  it('broker.publish() refuses a deeper topic by name; the limit is checked like every other', async () => {
    const broker = createBroker({ port: 0, maxTopicLevels: 3 });
    assert.throws(() => broker.publish('a/b/c/d', 'x'), /maxTopicLevels \(3\)/);
    broker.publish('a/b/c', 'x');
    assert.throws(() => createBroker({ maxTopicLevels: 0 }), /maxTopicLevels: must be an integer from 1 to 32768/);
    await broker.close();
  });

  it('a filter level costs the router little: 5,000 filters of 100 levels hold under 100 B per level', () => {
    // Three empty Maps per level made it ~600 B (a 64 KiB SUBSCRIBE of 32,000 levels held 19 MB).
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const router = new TopicRouter<string>();
    const filters = Array.from({ length: 5000 }, (_, i) => `${i}/${levels(99, 'x')}`);
    gc();
    const before = process.memoryUsage().heapUsed;
    for (const filter of filters) {
      router.add({ clientId: 'c', filter, qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 0 }, 'c');
    }
    gc();
    const perLevel = (process.memoryUsage().heapUsed - before) / (5000 * 100);
    assert.ok(perLevel < 100, `${perLevel.toFixed(0)} B per level`);
    assert.equal(router.match(`7/${levels(99, 'x')}`).entries.length, 1);
  });
});

describe('maxSubscriptionsPerClient (default 0: no limit, as Mosquitto and EMQX)', () => {
  it('beyond the quota a new filter gets SUBACK 0x97 Quota exceeded (3.1.1: 0x80); replacing a held one still works', () => {
    for (const [version, refused] of [[5, 0x97], [4, 0x80]] as const) {
      const f = new FakeCore({ limits: { maxSubscriptionsPerClient: 2 } });
      const c = f.connect({ clientId: 's', protocolVersion: version });
      c.take(2);
      assert.deepEqual(subscribe(c, ['a', 'b', 'c']), [1, 1, refused], 'the third filter of one packet is over');
      assert.deepEqual(subscribe(c, ['a', 'd'], 2), [1, refused], 'a held filter may be subscribed again, a new one not');
      c.send({ type: 10, packetId: 3, topicFilters: ['a'] });
      c.take(11);
      assert.deepEqual(subscribe(c, ['d'], 4), [1], 'a place freed by UNSUBSCRIBE can be used');
      assert.equal(f.inspect.counts().subscriptions, 2);
    }
  });

  it('the quota counts a persistent session\'s subscriptions across reconnects', () => {
    const f = new FakeCore({ limits: { maxSubscriptionsPerClient: 1 } });
    const c = f.connect({ clientId: 's', protocolVersion: 5, properties: { sessionExpiryInterval: 60 } });
    c.take(2);
    assert.deepEqual(subscribe(c, ['a']), [1]);
    c.drop();
    const back = f.connect({ clientId: 's', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 60 } });
    assert.equal((back.take(2)[0] as ConnackPacket).sessionPresent, true);
    assert.deepEqual(subscribe(back, ['b']), [0x97]);
  });
});

describe('maxRetainedMessages (default 0: no limit)', () => {
  it('a retained message on a new topic beyond the limit is delivered but not kept; replacing and clearing still work', () => {
    const warnings: string[] = [];
    const f = new FakeCore({ limits: { maxRetainedMessages: 2 }, events: { warning: (m) => warnings.push(m) } });
    const p = f.connect({ clientId: 'p', protocolVersion: 5 });
    p.take(2);
    const live = f.connect({ clientId: 'live', protocolVersion: 5 });
    live.take(2);
    subscribe(live, ['r/#']);
    for (const [topic, payload] of [['r/1', 'one'], ['r/2', 'two'], ['r/3', 'three'], ['r/4', 'four'], ['r/1', 'one again']]) {
      p.send(pub(topic!, payload!, { retain: true, qos: 1, packetId: 1 }));
      assert.equal((p.take(4)[0] as PubAckLikePacket).reasonCode ?? 0, 0, `${topic} acknowledged as delivered`);
    }
    assert.deepEqual(payloads(live.take(3)), ['one', 'two', 'three', 'four', 'one again'], 'every message reached the live subscriber');
    assert.equal(warnings.filter((w) => w.includes('retained store full')).length, 1, 'one warning, not one per message');
    assert.equal(f.inspect.counts().retainedRefused, 2);

    const late = f.connect({ clientId: 'late', protocolVersion: 5 });
    late.take(2);
    subscribe(late, ['r/#']);
    assert.deepEqual(payloads(late.take(3)), ['one again', 'two']);

    p.send(pub('r/2', '', { retain: true }));
    p.send(pub('r/3', 'three', { retain: true }));
    const later = f.connect({ clientId: 'later', protocolVersion: 5 });
    later.take(2);
    subscribe(later, ['r/#']);
    assert.deepEqual((later.take(3) as PublishPacket[]).map((m) => m.topic), ['r/1', 'r/3'], 'a cleared topic frees its place');
  });
});

describe('maxQueuedBytes (as Mosquitto\'s max_queued_bytes; default 0: no limit)', () => {
  function offlineQueue(overflow: 'drop-oldest' | 'drop-newest', payloads: string[]) {
    const f = new FakeCore({ limits: { maxQueuedBytes: 10, queueOverflow: overflow } });
    const s = f.connect({ clientId: 's', clean: false });
    s.take(2);
    s.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'q', qos: 1 }] });
    s.drop();
    const p = f.connect({ clientId: 'p' });
    for (const [i, payload] of payloads.entries()) p.send(pub('q', payload, { qos: 1, packetId: i + 1 }));
    /** The session as it is when called (a view, not the live object). */
    const session = () => f.inspect.session('s')!;
    return { f, session };
  }

  it('drop-oldest: the oldest messages make room by payload bytes; a message larger than the limit is never queued', () => {
    const { f, session } = offlineQueue('drop-oldest', ['aaaa', 'bbbb', 'cccc', 'x'.repeat(11)]);
    assert.equal(session().queuedBytes, 8);
    assert.equal(session().dropped, 2, 'aaaa made room for cccc; the 11-byte message was dropped');
    const back = f.connect({ clientId: 's', clean: false });
    assert.deepEqual(payloads(back.take(3)), ['bbbb', 'cccc']);
    assert.equal(session().queuedBytes, 0, 'every byte counted out again');
  });

  it('drop-newest: the message that does not fit is the one dropped', () => {
    const { f, session } = offlineQueue('drop-newest', ['aaaa', 'bbbb', 'cccc', 'dd']);
    assert.equal(session().queuedBytes, 10);
    const back = f.connect({ clientId: 's', clean: false });
    assert.deepEqual(payloads(back.take(3)), ['aaaa', 'bbbb', 'dd']);
  });
});
