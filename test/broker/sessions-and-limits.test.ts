// Sessions, limits, security settings and the embedding API, as a Mosquitto / EMQX user would expect
// and as MQTT 3.1.1 / 5.0 require. Timer rules run on the fake clock (FakeCore); the embedding API
// over real TCP on 127.0.0.1, port 0.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createBroker } from '../../src/server/broker.js';
import type { ProtocolVersion } from '../../src/protocol/constants.js';
import type {
  ConnackPacket,
  ConnectPacket,
  DisconnectPacket,
  PubAckLikePacket,
  PublishPacket,
  SubackPacket,
  WillMessage,
} from '../../src/protocol/packets.js';
import { startBroker } from '../helpers/broker.js';
import { delay } from '../helpers/wait.js';
import { FakeCore, type MemoryConnection } from '../helpers/fake-core.js';
import { eventually, payloads, publishes, quietPublishes, setup } from '../helpers/harness.js';
import { RawClient } from '../helpers/raw-client.js';

const pub = (c: MemoryConnection, topic: string, payload: string, qos: 0 | 1 | 2, packetId?: number, properties?: PublishPacket['properties']) =>
  c.send({ type: 3, topic, payload: Buffer.from(payload), qos, retain: false, dup: false, packetId, properties });

const sub = (c: MemoryConnection, topicFilter: string, qos: 0 | 1 | 2, properties?: { subscriptionIdentifier?: number }) => {
  c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter, qos }], properties });
  c.take(9);
};

/** CONNACK of a raw connection, or undefined when the broker closed it without one. */
async function connackOf(port: number, fields: Partial<ConnectPacket>): Promise<ConnackPacket | undefined> {
  try {
    const { client, connack } = await RawClient.connect(port, fields);
    client.destroy();
    return connack;
  } catch {
    return undefined;
  }
}

describe('offline queue and message expiry (fake clock)', () => {
  it(
    '[MQTT-3.3.2-5] expired messages are deleted from a queue, so with drop-newest they do not push out a live message',
    () => {
      const f = new FakeCore({ limits: { maxQueuedMessages: 2, queueOverflow: 'drop-newest' } });
      const s = f.connect({ clientId: 'sub', protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } });
      sub(s, 'q', 1);
      s.drop();
      const p = f.connect({ clientId: 'pub', protocolVersion: 5 });
      pub(p, 'q', 'old1', 1, 1, { messageExpiryInterval: 5 });
      pub(p, 'q', 'old2', 1, 2, { messageExpiryInterval: 5 });
      f.advance(10_000);
      pub(p, 'q', 'fresh', 1, 3);
      const back = f.connect({ clientId: 'sub', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } });
      assert.deepEqual(payloads(back.take(3)), ['fresh'], 'the two expired copies had to be deleted, the fresh one kept');
    },
  );

  it(
    '(3.3.2.3.3) Message Expiry Interval 0: a live subscriber still gets the message (its lifetime has not passed yet)',
    () => {
      const f = new FakeCore();
      const s = f.connect({ clientId: 'sub', protocolVersion: 5 });
      sub(s, 'q', 1);
      const p = f.connect({ clientId: 'pub', protocolVersion: 5 });
      pub(p, 'q', 'now', 1, 1, { messageExpiryInterval: 0 });
      assert.equal((p.take(4)[0] as PubAckLikePacket).reasonCode, 0, 'PUBACK says it matched a subscriber');
      const got = s.take(3) as PublishPacket[];
      assert.deepEqual(payloads(got), ['now'], 'Mosquitto (0 = no expiry) and EMQX (elapsed > interval) both deliver it');
    },
  );

  it(
    '[MQTT-4.4.0-1] [MQTT-3.8.4-8] [MQTT-3.3.4-3] the only member of a shared group resumes its session: the unacknowledged message is resent with its packet id, DUP, granted QoS and Subscription Identifier',
    () => {
      const f = new FakeCore();
      const m = f.connect({ clientId: 'm', protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } });
      sub(m, '$share/g/t', 1, { subscriptionIdentifier: 7 });
      const p = f.connect({ clientId: 'pub', protocolVersion: 5 });
      pub(p, 't', 'x', 2, 1);
      const [first] = m.take(3) as PublishPacket[];
      assert.equal(first!.qos, 1, 'delivered at the granted QoS 1');
      m.drop(); // no PUBACK
      const back = f.connect({ clientId: 'm', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } });
      const again = back.take(3) as PublishPacket[];
      assert.equal(again.length, 1);
      assert.equal(again[0]!.qos, 1, 'never above the QoS granted to the subscription');
      assert.equal(again[0]!.packetId, first!.packetId, 'original packet id');
      assert.equal(again[0]!.dup, true, 'DUP set on the resend');
      assert.equal(again[0]!.properties?.subscriptionIdentifier, 7);
    },
  );

  it('maxQueuedMessages also bounds the queue of a connected client held back by its Receive Maximum; drop-oldest keeps the newest, in order', () => {
    const f = new FakeCore({ limits: { maxQueuedMessages: 2 } });
    const s = f.connect({ clientId: 'sub', protocolVersion: 5, properties: { receiveMaximum: 1 } });
    sub(s, 'q', 1);
    const p = f.connect({ clientId: 'pub', protocolVersion: 5 });
    for (let i = 0; i < 5; i++) pub(p, 'q', `m${i}`, 1, i + 1);
    const got = s.take(3) as PublishPacket[];
    assert.deepEqual(payloads(got), ['m0'], 'one in flight');
    assert.equal(f.inspect.counts().droppedMessages, 2);
    const rest: string[] = [];
    let last = got[0]!;
    for (let i = 0; i < 2; i++) {
      s.send({ type: 4, packetId: last.packetId! });
      last = s.take(3)[0] as PublishPacket;
      rest.push(last.payload.toString());
    }
    assert.deepEqual(rest, ['m3', 'm4']);
  });

  it('the send window is min(maxInflight, the client\'s Receive Maximum)', () => {
    for (const [maxInflight, receiveMaximum, expected] of [
      [3, 2, 2],
      [3, 5, 3],
    ] as const) {
      const f = new FakeCore({ limits: { maxInflight } });
      const s = f.connect({ clientId: 'sub', protocolVersion: 5, properties: { receiveMaximum } });
      sub(s, 'q', 2);
      const p = f.connect({ clientId: 'pub', protocolVersion: 5 });
      for (let i = 0; i < 6; i++) pub(p, 'q', `m${i}`, 2, i + 1);
      assert.equal(s.take(3).length, expected, `maxInflight ${maxInflight}, Receive Maximum ${receiveMaximum}`);
    }
  });
});

describe('session expiry and takeover (fake clock)', () => {
  it('3.1.1 clean session 0: sessionExpiry sets the lifetime; 4294967295 keeps the session for ever', () => {
    const short = new FakeCore({ limits: { sessionExpiry: 60 } });
    short.connect({ clientId: 'p', clean: false }).drop();
    short.advance(59_000, 1000);
    assert.ok(short.inspect.hasSession('p'));
    short.advance(2_000, 1000);
    assert.ok(!short.inspect.hasSession('p'), 'gone after 60 s');
    const never = new FakeCore({ limits: { sessionExpiry: 0xffffffff } });
    never.connect({ clientId: 'p', clean: false }).drop();
    never.advance(400 * 24 * 3600_000, 24 * 3600_000);
    assert.ok(never.inspect.hasSession('p'), 'kept after 400 days');
  });

  it('[MQTT-3.1.4-3] a live takeover with Clean Start 1 discards the old session: no resend of its unacknowledged messages, no queue, no subscriptions', () => {
    const f = new FakeCore();
    const old = f.connect({ clientId: 'x', protocolVersion: 5, properties: { sessionExpiryInterval: 3600, receiveMaximum: 1 } });
    sub(old, 'q', 1);
    const p = f.connect({ clientId: 'pub', protocolVersion: 5 });
    pub(p, 'q', 'a', 1, 1);
    pub(p, 'q', 'b', 1, 2);
    assert.equal(old.take(3).length, 1, 'one in flight, one queued');
    const fresh = f.connect({ clientId: 'x', protocolVersion: 5, clean: true, properties: { sessionExpiryInterval: 3600 } });
    assert.equal((old.take(14)[0] as DisconnectPacket).reasonCode, 0x8e);
    assert.equal(old.closed, true);
    assert.equal((fresh.take(2)[0] as ConnackPacket).sessionPresent, false);
    assert.deepEqual(fresh.take(3), [], 'nothing of the old session is sent');
    assert.equal(f.inspect.counts().subscriptions, 0, 'the old subscription is gone');
    pub(p, 'q', 'c', 1, 3);
    assert.deepEqual(fresh.take(3), []);
  });

  it('5.0 live takeover without a Will Delay publishes the old connection\'s will once (3.1.4, 3.1.2.5)', () => {
    const f = new FakeCore();
    const w = f.connect({ clientId: 'w', protocolVersion: 5 });
    sub(w, 'will/#', 0);
    const will: WillMessage = { topic: 'will/x', payload: Buffer.from('gone'), qos: 0, retain: false };
    f.connect({ clientId: 'x', protocolVersion: 5, will, properties: { sessionExpiryInterval: 60 } });
    f.connect({ clientId: 'x', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 60 } });
    f.advance(120_000);
    assert.deepEqual(payloads(w.take(3)), ['gone']);
  });
});

describe('embedding API', () => {
  it(
    'createBroker refuses an invalid limit with an error naming it (as the config file does)',
    () => {
      const bad: [string, Record<string, unknown>][] = [
        ['receiveMaximum', { receiveMaximum: 0 }],
        ['maxInflight', { maxInflight: 0 }],
        ['maxQos', { maxQos: 3 }],
        ['queueOverflow', { queueOverflow: 'drop-oldes' }],
        ['maxPacketSize', { maxPacketSize: 0 }],
        ['sharedSubscriptionStrategy', { sharedSubscriptionStrategy: 'fastest' }],
        ['maxQueuedMessage', { maxQueuedMessage: 5 }], // a typo of maxQueuedMessages
      ];
      for (const [name, options] of bad) {
        assert.throws(() => createBroker({ port: 0, ...options }), new RegExp(name), `${name} accepted`);
      }
    },
  );

  it(
    'an authenticate hook answering neither true, false nor a failure code (0, undefined) is refused with a failure CONNACK',
    async (t) => {
      let answer: unknown;
      const { broker, port } = await startBroker({ authenticate: () => answer as boolean });
      t.after(() => broker.close());
      for (const a of [0, undefined]) {
        answer = a;
        for (const protocolVersion of [5, 4] as ProtocolVersion[]) {
          const connack = await connackOf(port, { protocolVersion, clientId: `auth-${String(a)}-${protocolVersion}` });
          assert.ok(connack !== undefined, `answer ${String(a)}, v${protocolVersion}: a CONNACK`);
          assert.ok(protocolVersion === 5 ? connack.reasonCode >= 0x80 : connack.reasonCode !== 0, `answer ${String(a)}, v${protocolVersion}: a failure code, got ${connack.reasonCode}`);
        }
      }
    },
  );

  it('authorizePublish / authorizeSubscribe that throw or reject: 0x80 for that packet, the connection and the broker go on; a throwing event listener breaks nothing', async (t) => {
    const h = await setup(t, {
      authorizePublish: (_c, m) => (m.topic === 'sync' ? (() => { throw new Error('x'); })() : m.topic === 'async' ? Promise.reject(new Error('y')) : true),
      authorizeSubscribe: (_c, s) => (s.topicFilter === 'sync' ? (() => { throw new Error('x'); })() : s.topicFilter === 'async' ? Promise.reject(new Error('y')) : true),
    });
    h.broker.on('clientConnected', () => {
      throw new Error('listener bug');
    });
    const c = await h.connected({ protocolVersion: 5 });
    for (const [i, topicFilter] of [[1, 'sync'], [2, 'async']] as const) {
      c.send({ type: 8, packetId: i, subscriptions: [{ topicFilter, qos: 1 }] });
      assert.deepEqual(((await c.next(9)) as SubackPacket).reasonCodes, [0x80], topicFilter);
    }
    for (const [i, topic] of [[3, 'sync'], [4, 'async']] as const) {
      c.send({ type: 3, topic, payload: Buffer.from('x'), qos: 1, packetId: i, retain: false, dup: false });
      assert.equal(((await c.next(4)) as PubAckLikePacket).reasonCode, 0x80, topic);
    }
    c.send({ type: 3, topic: 'sync', payload: Buffer.from('x'), qos: 2, packetId: 5, retain: false, dup: false });
    assert.equal(((await c.next(5)) as PubAckLikePacket).reasonCode, 0x80);
    await c.sync();
    assert.equal(c.closed, false);
    const v4 = await h.connected({ protocolVersion: 4 });
    v4.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'async', qos: 1 }] });
    assert.deepEqual(((await v4.next(9)) as SubackPacket).reasonCodes, [0x80]);
  });

  it(
    'authorizeSubscribe failing for one filter fails only that filter; the others in the same SUBSCRIBE keep the hook\'s answer',
    async (t) => {
      const h = await setup(t, { authorizeSubscribe: (_c, s) => (s.topicFilter === 'bad' ? Promise.reject(new Error('backend')) : true) });
      const c = await h.connected({ protocolVersion: 5 });
      c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'bad', qos: 1 }, { topicFilter: 'good', qos: 1 }] });
      assert.deepEqual(((await c.next(9)) as SubackPacket).reasonCodes, [0x80, 1]);
    },
  );

  it(
    'the subscribed event names a shared subscription as the client wrote it ($share/group/filter), like authorizeSubscribe and unsubscribed do',
    async (t) => {
      const h = await setup(t);
      const c = await h.connected({ protocolVersion: 5 });
      c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: '$share/g/a/#', qos: 1 }] });
      await c.next(9);
      c.send({ type: 10, packetId: 2, topicFilters: ['$share/g/a/#'] });
      await c.next(11);
      await eventually(() => h.events.unsubscribed.length === 1, 1000, 'unsubscribed');
      assert.deepEqual(h.events.unsubscribed[0]![1], ['$share/g/a/#']);
      assert.deepEqual(h.events.subscribed[0]![1], [{ topicFilter: '$share/g/a/#', qos: 1 }]);
    },
  );

  it(
    'the unsubscribed event lists only the filters that were subscribed',
    async (t) => {
      const h = await setup(t);
      const c = await h.subscriber('real', 1, { protocolVersion: 5 });
      c.send({ type: 10, packetId: 2, topicFilters: ['real', 'never'] });
      assert.deepEqual(((await c.next(11)) as { reasonCodes?: number[] }).reasonCodes, [0, 0x11]);
      await eventually(() => h.events.unsubscribed.length === 1, 1000, 'unsubscribed');
      assert.deepEqual(h.events.unsubscribed[0]![1], ['real']);
    },
  );

  it('broker.publish: QoS (bounded by the subscription), retain for new subscribers, and every forwarded 5.0 property', async (t) => {
    const h = await setup(t);
    const live = await h.subscriber('app/#', 1, { protocolVersion: 5 });
    const properties = { contentType: 'text/plain', userProperties: [['k', 'v']] as [string, string][], responseTopic: 'r/1', correlationData: Buffer.from('c'), payloadFormatIndicator: 1 };
    h.broker.publish('app/x', 'hi', { qos: 2, retain: true, properties });
    const [p] = await publishes(live, 1);
    assert.equal(p!.qos, 1);
    assert.equal(p!.retain, false, '[MQTT-3.3.1-9] not retained toward an existing subscription');
    assert.deepEqual(p!.properties, properties);
    const late = await h.subscriber('app/#', 2, { protocolVersion: 5 });
    const [r] = await publishes(late, 1);
    assert.equal(r!.qos, 2);
    assert.equal(r!.retain, true);
    assert.equal(r!.payload.toString(), 'hi');
    assert.deepEqual(r!.properties, properties);
    const [, client] = h.events.published.find(([m]) => m.topic === 'app/x')!;
    assert.equal(client, undefined, 'published event: no client for an application message');
  });

  it('broker.close(): 5.0 clients get DISCONNECT 0x8B, 3.1.1 and pre-CONNECT connections are closed, clientDisconnected fires once each, close() resolves and may be called again', async () => {
    const { broker, port } = await startBroker();
    const seen: (string | undefined)[] = [];
    broker.on('clientDisconnected', (c, info) => seen.push(`${c?.clientId}:${info.reasonCode}`));
    const v5 = (await RawClient.connect(port, { protocolVersion: 5, clientId: 'v5' })).client;
    const v4 = (await RawClient.connect(port, { protocolVersion: 4, clientId: 'v4' })).client;
    const silent = await RawClient.open(port);
    await eventually(() => broker.inspect.counts().connections === 3, 1000, 'three channels');
    await broker.close();
    assert.equal(((await v5.next(14)) as DisconnectPacket).reasonCode, 0x8b);
    await Promise.all([v5.waitClosed(), v4.waitClosed(), silent.waitClosed()]);
    assert.deepEqual(v4.packets, [], 'nothing for 3.1.1, just the close');
    await delay(20);
    assert.deepEqual(seen.sort(), ['undefined:139', 'v4:139', 'v5:139']);
    await broker.close();
    assert.equal(seen.length, 3, 'a second close() fires nothing');
  });

  it(
    'broker.close() publishes wills still waiting for their Will Delay (the sessions end), as Mosquitto does (will_delay__send_all)',
    async (t) => {
      const h = await setup(t);
      const will = (topic: string): WillMessage => ({ topic, payload: Buffer.from('bye'), qos: 1, retain: true, properties: { willDelayInterval: 30 } });
      const gone = await h.connected({ clientId: 'gone', protocolVersion: 5, will: will('will/gone'), properties: { sessionExpiryInterval: 300 } });
      gone.destroy();
      await eventually(() => !h.broker.inspect.isConnected('gone'), 1000, 'gone disconnected');
      await h.connected({ clientId: 'live', protocolVersion: 5, will: will('will/live'), properties: { sessionExpiryInterval: 300 } });
      await h.broker.close();
      const topics = h.events.published.map(([m]) => m.topic).sort();
      assert.deepEqual(topics, ['will/gone', 'will/live']);
    },
  );

  it(
    'listen() a second time is refused (or a no-op), and no timer outlives close()',
    async () => {
      const { broker } = await startBroker();
      let again: unknown;
      try {
        await broker.listen();
      } catch (err) {
        again = err;
      }
      const listeners = (broker as unknown as { running: unknown[] }).running.length;
      let ticks = 0;
      const tick = broker.core.tick.bind(broker.core);
      broker.core.tick = () => {
        ticks++;
        tick();
      };
      await broker.close();
      await delay(200);
      assert.ok(again !== undefined || listeners === 1, `second listen(): ${listeners} listeners running`);
      assert.equal(ticks, 0, 'core.tick() ran after close()');
    },
  );
});

describe('security settings over TCP', () => {
  it('ACL: %c with a broker-assigned Client ID, %u, first match wins, and # does not grant $SYS', async (t) => {
    const h = await setup(t, {
      acl: {
        default: 'deny',
        rules: [
          { permission: 'deny', action: 'publish', topic: 'users/%u/locked' },
          { permission: 'allow', action: 'all', topic: 'users/%u/#' },
          { permission: 'allow', action: 'publish', topic: 'devices/%c/telemetry' },
          { permission: 'allow', action: 'subscribe', topic: '#' },
        ],
      },
    });
    const { client: c, connack } = await h.connect({ protocolVersion: 5, clientId: '', username: 'alice' });
    const id = connack.properties?.assignedClientIdentifier;
    assert.ok(id);
    const code = async (topic: string, packetId: number) => {
      c.send({ type: 3, topic, payload: Buffer.from('x'), qos: 1, packetId, retain: false, dup: false });
      return ((await c.next(4)) as PubAckLikePacket).reasonCode;
    };
    assert.equal(await code(`devices/${id}/telemetry`, 1), 0x10, 'allowed (no subscriber)');
    assert.equal(await code('devices/other/telemetry', 2), 0x87);
    assert.equal(await code('users/alice/x', 3), 0x10);
    assert.equal(await code('users/alice/locked', 4), 0x87, 'the deny rule comes first');
    assert.equal(await code('users/bob/x', 5), 0x87);
    c.send({ type: 8, packetId: 6, subscriptions: [{ topicFilter: 'any/#', qos: 0 }, { topicFilter: '$SYS/#', qos: 0 }] });
    assert.deepEqual(((await c.next(9)) as SubackPacket).reasonCodes, [0, 0x87], '# does not cover $SYS topics');
    assert.deepEqual(await quietPublishes(c, 50), []);
  });
});
