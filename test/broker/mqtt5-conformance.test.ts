// MQTT 5.0 conformance: black-box tests over real TCP (127.0.0.1, ephemeral port) against the OASIS
// MQTT 5.0 text, for rules the other broker tests leave out (found by an audit in the eighth session).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConnackPacket, DisconnectPacket, Packet, PubAckLikePacket, PublishPacket, SubackPacket, UnsubackPacket } from '../../src/protocol/packets.js';
import { delay, packet, publishes, quietPublishes, setup, str, varint } from '../helpers/harness.js';
import type { RawClient } from '../helpers/raw-client.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import { pub } from '../helpers/packets.js';

const encodeV5 = (p: Packet) => encodePacket(p, 5);


async function subscribe(c: RawClient, packetId: number, topicFilter: string, opts: Record<string, unknown> = {}, properties?: Record<string, unknown>): Promise<SubackPacket> {
  c.send({ type: 8, packetId, subscriptions: [{ topicFilter, qos: 1, ...opts }], properties } as Packet);
  return (await c.next(9)) as SubackPacket;
}

/** The packets a raw connection got until the broker closed it. */
async function closedWith(c: RawClient, timeoutMs = 2000): Promise<Packet[]> {
  await c.waitClosed(timeoutMs);
  return c.packets.splice(0);
}

describe('MQTT 5.0: CONNECT', () => {
  it('[MQTT-3.2.2-12] a Will QoS above the Maximum QoS is refused: CONNACK 0x9B, then close', async (t) => {
    const h = await setup(t, { maxQos: 1 });
    const c = await h.open(5);
    c.send({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'wq', will: { topic: 'will/wq', payload: Buffer.from('x'), qos: 2, retain: false } });
    const got = await closedWith(c, 800);
    const connack = got.find((p): p is ConnackPacket => p.type === 2);
    assert.ok(connack === undefined || connack.reasonCode === 0x9b, `CONNACK 0x9B (or none), got ${JSON.stringify(connack)}`);
    assert.ok(connack === undefined || connack.sessionPresent === false);
  });

  it('[MQTT-3.2.2-13] a retained Will while Retain Available is 0 is refused: CONNACK 0x9A, then close', async (t) => {
    const h = await setup(t, { retainAvailable: false });
    const c = await h.open(5);
    c.send({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'wr', will: { topic: 'will/wr', payload: Buffer.from('x'), qos: 0, retain: true } });
    const got = await closedWith(c, 800);
    const connack = got.find((p): p is ConnackPacket => p.type === 2);
    assert.ok(connack === undefined || connack.reasonCode === 0x9a, `CONNACK 0x9A (or none), got ${JSON.stringify(connack)}`);
  });

  it('(3.1.2.11.10) Authentication Data without an Authentication Method is a Protocol Error: refused (0x82 or no CONNACK) and closed [MQTT-4.13.1-1]', async (t) => {
    const h = await setup(t);
    const c = await h.open(5);
    c.send({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'ad', properties: { authenticationData: Buffer.from('secret') } });
    const got = await closedWith(c, 800);
    const connack = got.find((p): p is ConnackPacket => p.type === 2);
    assert.ok(connack === undefined || connack.reasonCode >= 0x80, `refused, got ${JSON.stringify(connack)}`);
  });

  it('(3.1.2.11.3) Receive Maximum 0 in CONNECT is a Protocol Error: no accepted CONNACK, connection closed', async (t) => {
    const h = await setup(t);
    const c = await h.open(5);
    // CONNECT v5, clean start, keep alive 0, properties: Receive Maximum (0x21) = 0, Client ID "rm0".
    c.sendBytes(packet(0x10, [...str('MQTT'), 5, 0x02, 0, 0, 3, 0x21, 0, 0, ...str('rm0')]));
    const got = await closedWith(c);
    const connack = got.find((p): p is ConnackPacket => p.type === 2);
    assert.ok(connack === undefined || connack.reasonCode >= 0x80);
  });
});

describe('MQTT 5.0: wills', () => {
  it('(3.1.3.2.4) the Will Message Expiry Interval is the lifetime from when the will is published (after the Will Delay), sent in full', async (t) => {
    const h = await setup(t);
    const watcher = await h.subscriber('will/#', 1, { clientId: 'watcher', protocolVersion: 5 });
    const props = { sessionExpiryInterval: 30 };
    const short = await h.connected({ clientId: 'w-short', protocolVersion: 5, properties: props, will: { topic: 'will/short', payload: Buffer.from('s'), qos: 0, retain: false, properties: { willDelayInterval: 1, messageExpiryInterval: 1 } } });
    const long = await h.connected({ clientId: 'w-long', protocolVersion: 5, properties: props, will: { topic: 'will/long', payload: Buffer.from('l'), qos: 0, retain: false, properties: { willDelayInterval: 1, messageExpiryInterval: 30 } } });
    short.destroy();
    long.destroy();
    const got = new Map<string, PublishPacket>();
    const deadline = Date.now() + 2500;
    while (got.size < 2 && Date.now() < deadline) {
      try {
        const p = (await watcher.next(3, Math.max(1, deadline - Date.now()))) as PublishPacket;
        got.set(p.topic, p);
      } catch {
        break;
      }
    }
    // Both delivered, each with its full Message Expiry Interval (the lifetime starts when the will is published).
    const intervals = Object.fromEntries(['will/short', 'will/long'].map((topic) => [topic, got.get(topic)?.properties?.messageExpiryInterval ?? 'not delivered']));
    assert.deepEqual(intervals, { 'will/short': 1, 'will/long': 30 });
  });
});

describe('MQTT 5.0: topic aliases from the client', () => {
  it('[MQTT-3.3.2-8] Topic Alias 0 is not permitted: DISCONNECT 0x94, then close', async (t) => {
    const h = await setup(t);
    const c = await h.connected({ clientId: 'ta0', protocolVersion: 5 });
    c.send(pub('a', 'x', { properties: { topicAlias: 0 } }));
    const got = await closedWith(c);
    assert.equal(got.find((p): p is DisconnectPacket => p.type === 14)?.reasonCode, 0x94);
  });

  it('(3.3.2.3.4) an alias can be remapped, and mappings last only for the Network Connection', async (t) => {
    const h = await setup(t, { topicAliasMaximum: 5 });
    const sub = await h.subscriber('al/#', 0, { clientId: 'al-sub', protocolVersion: 5 });
    const props = { sessionExpiryInterval: 60 };
    const c = await h.connected({ clientId: 'al-pub', protocolVersion: 5, properties: props });
    c.send(pub('al/one', '1', { properties: { topicAlias: 1 } }));
    c.send(pub('', '2', { properties: { topicAlias: 1 } }));
    c.send(pub('al/two', '3', { properties: { topicAlias: 1 } }));
    c.send(pub('', '4', { properties: { topicAlias: 1 } }));
    const got = await publishes(sub, 4);
    assert.deepEqual(got.map((p) => [p.topic, p.payload.toString()]), [['al/one', '1'], ['al/one', '2'], ['al/two', '3'], ['al/two', '4']]);
    c.destroy();
    await delay(50);
    // A new connection to the same (persistent) session starts with no aliases.
    const again = await h.connected({ clientId: 'al-pub', protocolVersion: 5, clean: false, properties: props });
    again.send(pub('', 'stale', { properties: { topicAlias: 1 } }));
    const closed = await closedWith(again);
    const d = closed.find((p): p is DisconnectPacket => p.type === 14);
    assert.ok(d !== undefined && (d.reasonCode === 0x82 || d.reasonCode === 0x94), `DISCONNECT 0x82/0x94, got ${JSON.stringify(d)}`);
    assert.deepEqual(await quietPublishes(sub, 100), [], 'nothing was published through the stale alias');
  });
});

describe('MQTT 5.0: flow control, expiry and packet size toward the client', () => {
  it('[MQTT-3.3.4-9] [MQTT-4.9.0-2] a resumed session resends no more unacknowledged PUBLISHes than the new Receive Maximum', async (t) => {
    const h = await setup(t);
    const props = { sessionExpiryInterval: 60, receiveMaximum: 5 };
    const sub = await h.connected({ clientId: 'rx', protocolVersion: 5, properties: props });
    await subscribe(sub, 1, 'rx/t', { qos: 1 });
    const p = await h.connected({ clientId: 'rx-pub', protocolVersion: 5 });
    for (let i = 1; i <= 5; i++) p.send(pub('rx/t', String(i), { qos: 1, packetId: i }));
    assert.equal((await publishes(sub, 5)).length, 5, 'five in flight, none acknowledged');
    sub.destroy();
    await delay(50);
    const back = await h.connected({ clientId: 'rx', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 60, receiveMaximum: 2 } });
    const resent = await quietPublishes(back, 300);
    assert.ok(resent.length <= 2, `at most 2 unacknowledged QoS 1 PUBLISHes, got ${resent.length}`);
    // Acknowledging lets the rest come, in order.
    const all = [...resent];
    for (let i = 0; i < 10 && all.length < 5; i++) {
      for (const m of all.splice(0)) {
        back.send({ type: 4, packetId: m.packetId! });
        all.push(m);
      }
      all.push(...(await quietPublishes(back, 100)));
    }
    assert.deepEqual(all.map((m) => m.payload.toString()), ['1', '2', '3', '4', '5']);
  });

  it('[MQTT-3.3.2-5] [MQTT-3.3.2-6] a message held back by the client\'s Receive Maximum expires there, and the rest carry the time remaining', async (t) => {
    const h = await setup(t);
    const sub = await h.connected({ clientId: 'fq', protocolVersion: 5, properties: { receiveMaximum: 1 } });
    await subscribe(sub, 1, 'fq/t', { qos: 1 });
    const p = await h.connected({ clientId: 'fq-pub', protocolVersion: 5 });
    p.send(pub('fq/t', 'A', { qos: 1, packetId: 1 }));
    p.send(pub('fq/t', 'B', { qos: 1, packetId: 2, properties: { messageExpiryInterval: 1 } }));
    p.send(pub('fq/t', 'C', { qos: 1, packetId: 3, properties: { messageExpiryInterval: 60 } }));
    const [a] = await publishes(sub, 1);
    assert.equal(a!.payload.toString(), 'A');
    assert.deepEqual(await quietPublishes(sub, 1300), [], 'the window of 1 is full');
    sub.send({ type: 4, packetId: a!.packetId! });
    const [c] = await publishes(sub, 1);
    assert.equal(c!.payload.toString(), 'C', 'B expired while it waited and is never sent');
    const left = c!.properties?.messageExpiryInterval ?? 0;
    assert.ok(left >= 57 && left <= 59, `Message Expiry Interval reduced by the wait: ${left}`);
  });

  it('[MQTT-3.1.2-25] a QoS 1 message too large for the client is discarded as if sent: it takes no Receive Maximum slot', async (t) => {
    const h = await setup(t);
    const sub = await h.connected({ clientId: 'mps', protocolVersion: 5, properties: { maximumPacketSize: 100, receiveMaximum: 1 } });
    await subscribe(sub, 1, 'mps/t', { qos: 1 });
    const p = await h.connected({ clientId: 'mps-pub', protocolVersion: 5 });
    p.send(pub('mps/t', 'x'.repeat(200), { qos: 1, packetId: 1 }));
    p.send(pub('mps/t', 'small', { qos: 1, packetId: 2 }));
    const [m] = await publishes(sub, 1);
    assert.equal(m!.payload.toString(), 'small');
    sub.send({ type: 4, packetId: m!.packetId! });
    assert.deepEqual(await quietPublishes(sub, 150), [], 'the big one is never sent later either');
  });
});

describe('MQTT 5.0: subscriptions', () => {
  it('(3.8.3.1) Retain As Published applies to a shared subscription too', async (t) => {
    const h = await setup(t);
    const shared = await h.connected({ clientId: 'rap-shared', protocolVersion: 5 });
    await subscribe(shared, 1, '$share/g/rap/t', { qos: 0, retainAsPublished: true });
    const plain = await h.connected({ clientId: 'rap-plain', protocolVersion: 5 });
    await subscribe(plain, 1, 'rap/t', { qos: 0, retainAsPublished: true });
    const p = await h.connected({ clientId: 'rap-pub', protocolVersion: 5 });
    p.send(pub('rap/t', 'kept', { retain: true }));
    const [viaPlain] = await publishes(plain, 1);
    assert.equal(viaPlain!.retain, true, 'ordinary subscription: RETAIN kept');
    const [viaShared] = await publishes(shared, 1);
    assert.equal(viaShared!.retain, true, 'shared subscription with Retain As Published: RETAIN kept');
  });

  it('[MQTT-4.13.1-1] (3.2.2.3.11-13) a SUBSCRIBE using a feature the CONNACK said is unavailable is a Protocol Error: DISCONNECT 0xA2 / 0xA1 / 0x9E and close', async (t) => {
    const h = await setup(t, { wildcardSubscriptionAvailable: false, subscriptionIdentifiersAvailable: false, sharedSubscriptionAvailable: false });
    const cases: [string, Record<string, unknown> | undefined, number][] = [
      ['wild/+', undefined, 0xa2],
      ['plain', { subscriptionIdentifier: 3 }, 0xa1],
      ['$share/g/plain', undefined, 0x9e],
    ];
    const results: string[] = [];
    for (const [filter, properties, code] of cases) {
      const { client: c, connack } = await h.connect({ clientId: `ff-${code}`, protocolVersion: 5 });
      assert.equal(connack.reasonCode, 0);
      c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: filter, qos: 0 }], properties } as Packet);
      try {
        const got = await closedWith(c, 500);
        const d = got.find((p): p is DisconnectPacket => p.type === 14);
        results.push(`${filter}: DISCONNECT 0x${d?.reasonCode?.toString(16)}`);
      } catch {
        const s = c.packets.find((p): p is SubackPacket => p.type === 9);
        results.push(`${filter}: still open${s ? `, SUBACK 0x${s.reasonCodes[0]!.toString(16)}` : ''}`);
      }
    }
    assert.deepEqual(results, ['wild/+: DISCONNECT 0xa2', 'plain: DISCONNECT 0xa1', '$share/g/plain: DISCONNECT 0x9e']);
  });

  it('(3.8.2.1.2) Subscription Identifier 0 is a Protocol Error: DISCONNECT 0x82', async (t) => {
    const h = await setup(t);
    const c = await h.connected({ clientId: 'sid0', protocolVersion: 5 });
    // SUBSCRIBE id 1, properties: Subscription Identifier (0x0B) = 0, filter "a", options QoS 0.
    c.sendBytes(packet(0x82, [0, 1, 2, 0x0b, ...varint(0), ...str('a'), 0]));
    const got = await closedWith(c);
    assert.equal(got.find((p): p is DisconnectPacket => p.type === 14)?.reasonCode, 0x82);
  });

  it('[MQTT-3.3.4-3] Subscription Identifiers go with retained messages sent on SUBSCRIBE; a new SUBSCRIBE to the filter replaces (or removes) the identifier', async (t) => {
    const h = await setup(t);
    const p = await h.connected({ clientId: 'si-pub', protocolVersion: 5 });
    p.send(pub('si/x', 'kept', { retain: true, qos: 1, packetId: 1 }));
    await p.next(4);
    const c = await h.connected({ clientId: 'si', protocolVersion: 5 });
    await subscribe(c, 1, 'si/#', { qos: 0 }, { subscriptionIdentifier: 5 });
    let [m] = await publishes(c, 1);
    assert.deepEqual([m!.retain, m!.properties?.subscriptionIdentifier], [true, 5]);
    await subscribe(c, 2, 'si/#', { qos: 0 }, { subscriptionIdentifier: 6 });
    [m] = await publishes(c, 1);
    assert.deepEqual([m!.retain, m!.properties?.subscriptionIdentifier], [true, 6], 'Retain Handling 0: resent, with the new identifier');
    p.send(pub('si/x', 'live'));
    [m] = await publishes(c, 1);
    assert.deepEqual([m!.payload.toString(), m!.properties?.subscriptionIdentifier], ['live', 6], 'only the new identifier');
    await subscribe(c, 3, 'si/#', { qos: 0, retainHandling: 2 });
    p.send(pub('si/x', 'plain'));
    [m] = await publishes(c, 1);
    assert.equal(m!.properties?.subscriptionIdentifier, undefined, 'a SUBSCRIBE without identifier removes it');
    assert.deepEqual(await quietPublishes(c, 100), []);
  });

  it('(3.3.1.3) Retain Handling 1: a subscription kept in a resumed session already exists, so retained messages are not resent', async (t) => {
    const h = await setup(t);
    const p = await h.connected({ clientId: 'rh-pub', protocolVersion: 5 });
    p.send(pub('rh/x', 'kept', { retain: true, qos: 1, packetId: 1 }));
    await p.next(4);
    const props = { sessionExpiryInterval: 60 };
    const c = await h.connected({ clientId: 'rh', protocolVersion: 5, properties: props });
    await subscribe(c, 1, 'rh/#', { qos: 0, retainHandling: 1 });
    assert.equal((await publishes(c, 1))[0]!.payload.toString(), 'kept', 'new subscription: sent');
    c.destroy();
    await delay(50);
    const back = await h.connected({ clientId: 'rh', protocolVersion: 5, clean: false, properties: props });
    await subscribe(back, 2, 'rh/#', { qos: 0, retainHandling: 1 });
    assert.deepEqual(await quietPublishes(back, 150), [], 'existing subscription: not resent');
  });

  it('[MQTT-3.10.4-5] UNSUBSCRIBE of a shared subscription: 0x00, delivery stops; again: 0x11', async (t) => {
    const h = await setup(t);
    const c = await h.connected({ clientId: 'us', protocolVersion: 5 });
    await subscribe(c, 1, '$share/g/us/t', { qos: 0 });
    const p = await h.connected({ clientId: 'us-pub', protocolVersion: 5 });
    p.send(pub('us/t', '1'));
    await publishes(c, 1);
    c.send({ type: 10, packetId: 2, topicFilters: ['$share/g/us/t'] });
    assert.deepEqual(((await c.next(11)) as UnsubackPacket).reasonCodes, [0x00]);
    p.send(pub('us/t', '2'));
    assert.deepEqual(await quietPublishes(c, 100), []);
    c.send({ type: 10, packetId: 3, topicFilters: ['$share/g/us/t'] });
    assert.deepEqual(((await c.next(11)) as UnsubackPacket).reasonCodes, [0x11]);
  });
});

describe('MQTT 5.0: Receive Maximum toward the broker', () => {
  it('(3.3.4) more unacknowledged QoS 1 PUBLISHes than the broker\'s Receive Maximum (acks held back by an async authorizePublish): DISCONNECT 0x93', async (t) => {
    const h = await setup(t, { receiveMaximum: 2, authorizePublish: () => new Promise<boolean>((r) => setTimeout(() => r(true), 200)) });
    const c = await h.connected({ clientId: 'rq1', protocolVersion: 5 });
    c.sendBytes(Buffer.concat([1, 2, 3].map((i) => encodeV5(pub('rq1/t', String(i), { qos: 1, packetId: i })))));
    const got = await closedWith(c, 1500);
    assert.equal(got.find((p): p is DisconnectPacket => p.type === 14)?.reasonCode, 0x93);
  });
});

describe('MQTT 5.0: Request Problem Information', () => {
  it('[MQTT-3.1.2-29] Request Problem Information 0: no Reason String or User Properties on PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK, even on failures', async (t) => {
    const h = await setup(t, { authorizePublish: (_c, m) => m.topic !== 'rpi/denied' });
    const c = await h.connected({ clientId: 'rpi', protocolVersion: 5, properties: { requestProblemInformation: 0 } });
    c.send(pub('rpi/denied', 'x', { qos: 1, packetId: 1 }));
    c.send(pub('rpi/none', 'x', { qos: 2, packetId: 2 }));
    c.send(pub('rpi/bad', '', { qos: 1, packetId: 3, payload: Buffer.from([0xff]), properties: { payloadFormatIndicator: 1 } }));
    c.send({ type: 6, packetId: 2 });
    c.send({ type: 6, packetId: 99 });
    c.send({ type: 8, packetId: 4, subscriptions: [{ topicFilter: 'a/#/b', qos: 0 }] });
    c.send({ type: 10, packetId: 5, topicFilters: ['never'] });
    const acks: Packet[] = [];
    for (const type of [4, 5, 4, 7, 7, 9, 11]) acks.push(await c.next(type));
    const codes = acks.map((p) => (p as PubAckLikePacket).reasonCode ?? (p as SubackPacket).reasonCodes);
    assert.deepEqual(codes, [0x87, 0x10, 0x99, 0x00, 0x92, [0x8f], [0x11]]);
    for (const p of acks) {
      const props = (p as { properties?: { reasonString?: string; userProperties?: unknown } }).properties;
      assert.equal(props?.reasonString, undefined, `no Reason String on packet type ${p.type}`);
      assert.equal(props?.userProperties, undefined, `no User Properties on packet type ${p.type}`);
    }
  });
});
