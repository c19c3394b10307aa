// Publish / subscribe over real TCP with raw clients: filter matching, $-topics, overlapping
// subscriptions, SUBACK codes, UNSUBSCRIBE, QoS 2 exactly once, retained messages, ordering.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PublishPacket, SubackPacket, UnsubackPacket } from '../../src/protocol/packets.js';
import { payloads, publishes, quietPublishes, setup, type Harness } from '../helpers/harness.js';
import type { RawClient } from '../helpers/raw-client.js';

/** Everything the broker sent `client` so far, as PUBLISH packets (a PINGREQ round trip first). */
async function drain(client: RawClient): Promise<PublishPacket[]> {
  await client.sync();
  const out = client.packets.filter((p) => p.type === 3) as PublishPacket[];
  client.packets.length = 0;
  return out;
}

/** Publishes at QoS 1 from a raw client and waits for every PUBACK: the broker has routed them all. */
async function publishAll(h: Harness, topics: string[], payload?: (t: string) => string): Promise<void> {
  const pub = await h.connected();
  topics.forEach((topic, i) => pub.send({ type: 3, topic, payload: Buffer.from(payload ? payload(topic) : topic), qos: 1, packetId: i + 1, retain: false, dup: false }));
  for (let i = 0; i < topics.length; i++) await pub.next(4);
}

describe('publish / subscribe', () => {
  it('[MQTT-4.7.1-1] [MQTT-4.7.1-2] + and # filters (a/# matches a)', async (t) => {
    const h = await setup(t);
    const topics = ['a', 'a/b', 'a/b/c', 'x/b', 'a//c', '/b', 'b', 'a/'];
    const expected: Record<string, string[]> = {
      'a/#': ['a', 'a/b', 'a/b/c', 'a//c', 'a/'],
      'a/+': ['a/b', 'a/'],
      '+/b': ['a/b', 'x/b', '/b'],
      '#': topics,
      'a/+/c': ['a/b/c', 'a//c'],
      '+': ['a', 'b'],
      'a/b': ['a/b'],
      '+/+': ['a/b', 'x/b', '/b', 'a/'],
      '/#': ['/b'],
      '+/#': topics,
      'a/b/c/#': ['a/b/c'],
    };
    const subs = new Map<string, RawClient>();
    for (const filter of Object.keys(expected)) subs.set(filter, await h.subscriber(filter));
    await publishAll(h, topics);
    for (const [filter, client] of subs) {
      assert.deepEqual(payloads(await drain(client)).sort(), [...expected[filter]!].sort(), `filter ${filter}`);
    }
  });

  it('[MQTT-4.7.2-1] $SYS/x is not matched by # or +/x, but by $SYS/# and $SYS/+', async (t) => {
    const h = await setup(t);
    const filters = ['#', '+/x', '+/#', '$SYS/#', '$SYS/+', '$SYS/x'];
    const subs = await Promise.all(filters.map((f) => h.subscriber(f)));
    h.broker.publish('$SYS/x', 'sys');
    const pub = await h.connected();
    pub.send({ type: 3, topic: '$other/x', payload: Buffer.from('other'), qos: 1, packetId: 1, retain: false, dup: false });
    await pub.next(4);
    const got = await Promise.all(subs.map(async (s) => payloads(await drain(s))));
    assert.deepEqual(Object.fromEntries(filters.map((f, i) => [f, got[i]])), {
      '#': [],
      '+/x': [],
      '+/#': [],
      '$SYS/#': ['sys'],
      '$SYS/+': ['sys'],
      '$SYS/x': ['sys'],
    });
  });

  it('[MQTT-3.3.5-1] overlapping subscriptions: one copy, at the highest granted QoS', async (t) => {
    const h = await setup(t);
    const c = await h.connected();
    c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'o/#', qos: 0 }, { topicFilter: 'o/+', qos: 1 }] });
    await c.next(9);
    c.send({ type: 8, packetId: 2, subscriptions: [{ topicFilter: '#', qos: 0 }] });
    await c.next(9);
    const pub = await h.connected();
    pub.send({ type: 3, topic: 'o/t', payload: Buffer.from('x'), qos: 2, packetId: 1, retain: false, dup: false });
    await pub.next(5);
    const got = await drain(c);
    assert.equal(got.length, 1, 'one copy');
    assert.equal(got[0]!.qos, 1);
  });

  it('[MQTT-3.8.4-3] subscribing again to the same filter replaces the subscription (new QoS, no duplicate)', async (t) => {
    const h = await setup(t);
    const c = await h.subscriber('r/x', 2);
    c.send({ type: 8, packetId: 2, subscriptions: [{ topicFilter: 'r/x', qos: 0 }] });
    assert.deepEqual(((await c.next(9)) as SubackPacket).reasonCodes, [0]);
    assert.equal(h.broker.inspect.counts().subscriptions, 1);
    h.broker.publish('r/x', 'x', { qos: 2 });
    const got = await drain(c);
    assert.deepEqual(got.map((p) => p.qos), [0]);
  });

  it('SUBACK grants at most maxQos, and delivery is downgraded accordingly', async (t) => {
    const h = await setup(t, { maxQos: 1 });
    for (const protocolVersion of [4, 5] as const) {
      const c = await h.connected({ protocolVersion });
      c.send({ type: 8, packetId: 1, subscriptions: [0, 1, 2].map((qos) => ({ topicFilter: `g/${qos}`, qos: qos as 0 | 1 | 2 })) });
      assert.deepEqual(((await c.next(9)) as SubackPacket).reasonCodes, [0, 1, 1]);
      h.broker.publish('g/2', 'x', { qos: 2 });
      assert.deepEqual((await drain(c)).map((p) => p.qos), [1]);
    }
  });

  it('invalid topic filters get SUBACK 0x80 (3.1.1) / 0x8F (5.0); valid ones in the same SUBSCRIBE are granted', async (t) => {
    const h = await setup(t);
    // A zero-length filter is answered per filter only in 5.0: in 3.1.x it is a protocol violation that closes the
    // connection [MQTT-4.7.3-1] [MQTT-4.8.0-1] (test/protocol/conformance-edges.test.ts).
    const filters = ['a/#/b', 'a+', '#a', 'a/b#', '+a/b', 'a/+b', '', 'ok/#', 'ok/+/x'];
    for (const [protocolVersion, fail] of [[4, 0x80], [5, 0x8f], [3, 0x80]] as const) {
      const c = await h.connected({ protocolVersion });
      const these = protocolVersion === 5 ? filters : filters.filter((f) => f !== '');
      c.send({ type: 8, packetId: 9, subscriptions: these.map((topicFilter) => ({ topicFilter, qos: 1 })) });
      const ack = (await c.next(9)) as SubackPacket;
      assert.equal(ack.packetId, 9);
      assert.deepEqual(ack.reasonCodes, [...these.slice(0, -2).map(() => fail), 1, 1], `version ${protocolVersion}`);
      assert.equal(c.closed, false);
    }
    assert.equal(h.broker.inspect.counts().subscriptions, 6);
  });

  it('[MQTT-3.10.4-1] [MQTT-3.10.4-4] [MQTT-3.10.4-5] UNSUBSCRIBE stops delivery; UNSUBACK always (5.0: 0x11 when there was no subscription)', async (t) => {
    const h = await setup(t);
    for (const protocolVersion of [4, 5] as const) {
      const c = await h.subscriber(['u/a', 'u/b'], 1, { protocolVersion });
      c.send({ type: 10, packetId: 3, topicFilters: ['u/a', 'u/none'] });
      const ack = (await c.next(11)) as UnsubackPacket;
      assert.equal(ack.packetId, 3);
      if (protocolVersion === 5) assert.deepEqual(ack.reasonCodes, [0x00, 0x11]);
      else assert.equal(ack.reasonCodes, undefined, '3.1.1 UNSUBACK carries no reason codes');
      h.broker.publish('u/a', 'gone', { qos: 1 });
      h.broker.publish('u/b', 'kept', { qos: 1 });
      assert.deepEqual(payloads(await drain(c)), ['kept']);
      c.send({ type: 10, packetId: 4, topicFilters: ['u/b'] });
      await c.next(11);
    }
    assert.equal(h.broker.inspect.counts().subscriptions, 0);
  });

  it('QoS 0/1/2 flows: publisher acknowledgements and delivery at min(publish QoS, subscription QoS)', async (t) => {
    const h = await setup(t);
    const subs = await Promise.all([0, 1, 2].map((q) => h.subscriber('f/x', q as 0 | 1 | 2)));
    const pub = await h.connected();
    for (const qos of [0, 1, 2] as const) {
      pub.send({ type: 3, topic: 'f/x', payload: Buffer.from(`q${qos}`), qos, packetId: qos ? 10 + qos : undefined, retain: false, dup: false });
    }
    assert.equal((await pub.next(4) as { packetId: number }).packetId, 11);
    assert.equal((await pub.next(5) as { packetId: number }).packetId, 12);
    pub.send({ type: 6, packetId: 12 });
    assert.equal((await pub.next(7) as { packetId: number }).packetId, 12);
    const got = await Promise.all(subs.map((s) => publishes(s, 3)));
    got.forEach((ps, subQos) => {
      assert.deepEqual(payloads(ps), ['q0', 'q1', 'q2']);
      assert.deepEqual(ps.map((p) => p.qos), [0, Math.min(1, subQos), Math.min(2, subQos)]);
    });
    // Subscriber side of QoS 2: PUBREC -> PUBREL -> PUBCOMP ends the flow.
    const q2 = got[2]![2]!;
    subs[2]!.send({ type: 5, packetId: q2.packetId! });
    assert.equal((await subs[2]!.next(6) as { packetId: number }).packetId, q2.packetId);
    subs[2]!.send({ type: 7, packetId: q2.packetId! });
    subs[2]!.send({ type: 4, packetId: got[2]![1]!.packetId! });
    await subs[2]!.sync();
    assert.equal(h.broker.inspect.session(h.events.clientConnected[2]![0].clientId)?.inflight, 0);
  });

  it('[MQTT-4.3.3-9] QoS 2 exactly once: a PUBLISH resent with DUP before PUBREL is acknowledged but delivered once', async (t) => {
    const h = await setup(t);
    const sub = await h.subscriber('eo/#', 2);
    for (const protocolVersion of [4, 5] as const) {
      const pub = await h.connected({ protocolVersion });
      const p = { type: 3 as const, topic: 'eo/x', payload: Buffer.from(`once-${protocolVersion}`), qos: 2 as const, packetId: 7, retain: false, dup: false };
      pub.send(p);
      assert.equal(((await pub.next(5)) as { packetId: number }).packetId, 7);
      pub.send({ ...p, dup: true });
      pub.send({ ...p, dup: true });
      assert.equal(((await pub.next(5)) as { packetId: number }).packetId, 7);
      assert.equal(((await pub.next(5)) as { packetId: number }).packetId, 7);
      pub.send({ type: 6, packetId: 7 });
      await pub.next(7);
      // After PUBREL the packet id is free: the same id is a new message.
      pub.send({ ...p, payload: Buffer.from(`again-${protocolVersion}`) });
      await pub.next(5);
      pub.send({ type: 6, packetId: 7 });
      await pub.next(7);
    }
    const got = await drain(sub);
    assert.deepEqual(payloads(got), ['once-4', 'again-4', 'once-5', 'again-5']);
  });

  it('[MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-9] retained: the last one per topic is kept and sent to new subscribers with RETAIN=1', async (t) => {
    const h = await setup(t);
    const live = await h.subscriber('ret/#', 1);
    const pub = await h.connected();
    const send = (topic: string, payload: string, qos: 0 | 1, id: number) =>
      pub.send({ type: 3, topic, payload: Buffer.from(payload), qos, packetId: qos ? id : undefined, retain: true, dup: false });
    send('ret/a', 'first', 1, 1);
    send('ret/a', 'second', 1, 2);
    send('ret/b', 'b', 0, 3);
    await pub.sync();
    // A subscriber that was already there gets them live, RETAIN=0.
    const liveGot = await drain(live);
    assert.deepEqual(payloads(liveGot), ['first', 'second', 'b']);
    assert.ok(liveGot.every((p) => !p.retain), 'RETAIN 0 on live delivery');
    assert.equal(h.broker.inspect.counts().retained, 2);
    const fresh = await h.subscriber('ret/#', 1);
    const got = await drain(fresh);
    assert.deepEqual(payloads(got).sort(), ['b', 'second']);
    assert.ok(got.every((p) => p.retain), 'RETAIN 1 for retained messages on subscribe');
    assert.deepEqual(got.map((p) => [p.topic, p.qos]).sort(), [['ret/a', 1], ['ret/b', 0]]);
    // Exact filter, QoS bounded by the subscription.
    const exact = await h.subscriber('ret/a', 0);
    const [e] = await drain(exact);
    assert.equal(e!.payload.toString(), 'second');
    assert.equal(e!.qos, 0);
  });

  it('[MQTT-3.3.1-10] [MQTT-3.3.1-11] a retained PUBLISH with an empty payload deletes the retained message', async (t) => {
    const h = await setup(t);
    const pub = await h.connected();
    pub.send({ type: 3, topic: 'del/x', payload: Buffer.from('keep'), qos: 1, packetId: 1, retain: true, dup: false });
    await pub.next(4);
    const live = await h.subscriber('del/x', 1);
    assert.equal((await drain(live)).length, 1);
    pub.send({ type: 3, topic: 'del/x', payload: Buffer.alloc(0), qos: 1, packetId: 2, retain: true, dup: false });
    await pub.next(4);
    // The empty message itself is delivered to current subscribers as usual.
    const [empty] = await drain(live);
    assert.equal(empty!.payload.length, 0);
    assert.equal(h.broker.inspect.counts().retained, 0);
    const fresh = await h.subscriber('del/#', 1);
    assert.deepEqual(await quietPublishes(fresh, 50), []);
  });

  it('message order per topic and QoS is kept: 1000 QoS 1 messages arrive in order', async (t) => {
    const h = await setup(t);
    const sub = await h.subscriber('ord/x', 1);
    const pub = await h.connected();
    for (let i = 0; i < 1000; i++) {
      pub.send({ type: 3, topic: 'ord/x', payload: Buffer.from(String(i)), qos: 1, packetId: i + 1, retain: false, dup: false });
    }
    const got: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const p = (await sub.next(3)) as PublishPacket;
      got.push(p.payload.toString());
      sub.send({ type: 4, packetId: p.packetId! });
    }
    assert.deepEqual(got, Array.from({ length: 1000 }, (_, i) => String(i)));
  });

  it('maxInflight 5: exactly 5 unacknowledged QoS 1 messages are out at once; each PUBACK lets exactly one more go', async (t) => {
    const h = await setup(t, { maxInflight: 5 });
    const sub = await h.subscriber('cap/#', 1);
    const pub = await h.connected();
    for (let i = 0; i < 8; i++) pub.send({ type: 3, topic: 'cap/x', payload: Buffer.from(String(i)), qos: 1, packetId: i + 1, retain: false, dup: false });
    const first = (await sub.collect(150, 3)) as PublishPacket[];
    assert.deepEqual(first.map((p) => p.payload.toString()), ['0', '1', '2', '3', '4']);
    sub.send({ type: 4, packetId: first[0]!.packetId! });
    const next = (await sub.collect(150, 3)) as PublishPacket[];
    assert.deepEqual(next.map((p) => p.payload.toString()), ['5']);
  });

  it('order is kept through a full in-flight window (maxInflight 5): QoS 0, 1 and 2 each in order', async (t) => {
    const h = await setup(t, { maxInflight: 5 });
    const sub = await h.subscriber('win/#', 2);
    const pub = await h.connected();
    const n = 300;
    for (let i = 0; i < n; i++) {
      const qos = (i % 3) as 0 | 1 | 2;
      pub.send({ type: 3, topic: `win/${qos}`, payload: Buffer.from(String(i)), qos, packetId: qos ? i + 1 : undefined, retain: false, dup: false });
    }
    const byQos: number[][] = [[], [], []];
    let inflight = 0;
    let maxSeen = 0;
    while (byQos[1]!.length + byQos[2]!.length < 200) {
      const p = (await sub.next()) as PublishPacket | { type: number; packetId: number };
      if (p.type === 3) {
        const pp = p as PublishPacket;
        byQos[pp.qos]!.push(Number(pp.payload.toString()));
        if (pp.qos === 1) sub.send({ type: 4, packetId: pp.packetId! });
        if (pp.qos === 2) {
          inflight++;
          maxSeen = Math.max(maxSeen, inflight);
          sub.send({ type: 5, packetId: pp.packetId! });
        }
      } else if (p.type === 6) {
        sub.send({ type: 7, packetId: (p as { packetId: number }).packetId });
        inflight--;
      }
    }
    byQos[0]!.push(...(await drain(sub)).filter((p) => p.qos === 0).map((p) => Number(p.payload.toString())));
    for (const q of [0, 1, 2]) {
      const expected = Array.from({ length: n }, (_, i) => i).filter((i) => i % 3 === q);
      assert.deepEqual(byQos[q], expected, `QoS ${q} in order`);
    }
    assert.ok(maxSeen <= 5);
  });

  it('5.0 PUBACK / PUBREC say 0x10 (No matching subscribers) when nobody subscribed, 0x00 otherwise', async (t) => {
    const h = await setup(t);
    const pub = await h.connected({ protocolVersion: 5 });
    pub.send({ type: 3, topic: 'nobody', payload: Buffer.from('x'), qos: 1, packetId: 1, retain: false, dup: false });
    assert.equal(((await pub.next(4)) as { reasonCode?: number }).reasonCode, 0x10);
    pub.send({ type: 3, topic: 'nobody', payload: Buffer.from('x'), qos: 2, packetId: 2, retain: false, dup: false });
    assert.equal(((await pub.next(5)) as { reasonCode?: number }).reasonCode, 0x10);
    await h.subscriber('nobody');
    pub.send({ type: 3, topic: 'nobody', payload: Buffer.from('x'), qos: 1, packetId: 3, retain: false, dup: false });
    assert.equal(((await pub.next(4)) as { reasonCode?: number }).reasonCode ?? 0, 0);
  });
});
