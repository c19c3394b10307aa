// One broker on the Redis session store, over sockets (MQTT.js and raw packets): persistent sessions survive a
// broker restart on the same Redis (subscriptions, queued QoS 1 messages, in-flight resent with DUP), expiry
// counts through the downtime, and a clean session writes nothing to Redis.
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { after, before, it, type TestContext } from 'node:test';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { Redis } from 'ioredis';
import { createBroker, type Broker, type BrokerOptions } from '../../../src/server/broker.js';
import type { PubAckLikePacket, PublishPacket } from '../../../src/protocol/packets.js';
import { openRedisSessionStore, type RedisSessionStore } from '../../../src/cluster/redis-sessions.js';
import { startBroker } from '../../helpers/broker.js';
import { FakeClock } from '../../helpers/fake-core.js';
import { RawClient } from '../../helpers/raw-client.js';
import { RedisServer, noRedis } from '../../helpers/redis.js';
import { describeOrSkip } from '../../helpers/skip.js';
import { eventually } from '../../helpers/wait.js';

let server: RedisServer;
let redis: Redis;
let prefixes = 0;

/** Brokers on one Redis prefix, one after the other; the last one is closed when the test ends. */
function brokersOn(t: TestContext, options: BrokerOptions & { clock?: FakeClock; redis?: RedisServer } = {}) {
  const prefix = `r${prefixes++}`;
  let current: { broker: Broker; store: RedisSessionStore } | undefined;
  const stop = async (): Promise<void> => {
    const c = current;
    current = undefined;
    if (c === undefined) return;
    await c.broker.close();
    await c.store.whenClosed();
  };
  t.after(stop);
  return {
    prefix,
    async start(): Promise<{ broker: Broker; store: RedisSessionStore; port: number; url: string }> {
      const { redis: own, ...brokerOptions } = options;
      const store = await openRedisSessionStore((own ?? server).url, { prefix, clock: options.clock });
      const { broker, port, url } = await startBroker({ ...brokerOptions, sessionStore: store });
      current = { broker, store };
      return { broker, store, port, url };
    },
    stop,
  };
}

function connectMqtt(t: TestContext, url: string, options: IClientOptions): Promise<{ client: MqttClient; sessionPresent: boolean }> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
  t.after(() => new Promise<void>((r) => client.end(true, {}, () => r())));
  return new Promise((resolve, reject) => {
    client.once('connect', (connack) => resolve({ client, sessionPresent: connack.sessionPresent }));
    client.once('error', reject);
  });
}

const end = (c: MqttClient): Promise<void> => new Promise((r) => c.end(false, {}, () => r()));

/** The next `n` messages a client receives: topic and payload. */
function messages(c: MqttClient, n: number): Promise<string[]> {
  const got: string[] = [];
  return new Promise((resolve) => {
    c.on('message', (topic, payload) => {
      got.push(`${topic}=${payload.toString()}`);
      if (got.length === n) resolve(got);
    });
  });
}

describeOrSkip('cluster sessions: a broker on Redis, restarted', noRedis, () => {
  before(async () => {
    server = await RedisServer.start();
    redis = new Redis(server.url);
  });
  after(async () => {
    redis?.disconnect();
    await server?.close();
  });

  it('3.1.1 clean session 0 and 5.0 Session Expiry: subscriptions and queued QoS 1 messages come back after a restart', async (t) => {
    const brokers = brokersOn(t);
    let { url } = await brokers.start();
    const v4: IClientOptions = { clientId: 'keep-311', protocolVersion: 4, clean: false };
    const v5: IClientOptions = { clientId: 'keep-5', protocolVersion: 5, clean: true, properties: { sessionExpiryInterval: 3600 } };
    for (const o of [v4, v5]) {
      const { client } = await connectMqtt(t, url, o);
      await client.subscribeAsync('q/#', { qos: 1 });
      await end(client);
    }
    const { client: pub } = await connectMqtt(t, url, { clientId: 'pub', protocolVersion: 5 });
    for (let i = 1; i <= 3; i++) await pub.publishAsync(`q/${i}`, `m${i}`, { qos: 1 });
    await end(pub);
    const msgKeys = await redis.keys(`${brokers.prefix}:msg:*`);
    assert.equal(msgKeys.length, 3, 'each message stored once for both sessions');

    await brokers.stop();
    ({ url } = await brokers.start());

    for (const o of [v4, { ...v5, clean: false }]) {
      const got: string[] = [];
      const client = mqtt.connect(url, { reconnectPeriod: 0, ...o });
      t.after(() => new Promise<void>((r) => client.end(true, {}, () => r())));
      client.on('message', (topic, payload) => got.push(`${topic}=${payload.toString()}`));
      const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
        client.once('connect', resolve);
        client.once('error', reject);
      });
      assert.equal(connack.sessionPresent, true, `${o.clientId}: the session is back [MQTT-3.2.2-2]`);
      await eventually(() => got.length >= 3, 3000, `${o.clientId}: queued messages`);
      assert.deepEqual(got.slice(0, 3), ['q/1=m1', 'q/2=m2', 'q/3=m3'], 'in order');
      // The subscription is back too: a new message reaches it.
      const { client: p2 } = await connectMqtt(t, url, { clientId: `p2-${o.clientId}` });
      await p2.publishAsync('q/new', `fresh-${o.clientId}`, { qos: 1 });
      await eventually(() => got.includes(`q/new=fresh-${o.clientId}`), 3000, 'a new message');
      await end(p2);
      await end(client);
    }
    // Acknowledged messages are deleted from Redis; what is left is the one queued for keep-311 (offline
    // again) by the second round.
    const left = await redis.keys(`${brokers.prefix}:msg:*`);
    assert.equal(left.length, 1);
    assert.match((await redis.hget(left[0]!, 'm'))!, /"from":"p2-keep-5"/);
    assert.equal(await redis.hget(left[0]!, 'refs'), '1');
    assert.equal(await redis.hlen(`${brokers.prefix}:session:{keep-311}:queue`), 1);
    assert.equal(await redis.hlen(`${brokers.prefix}:session:{keep-5}:queue`), 0);
  });

  it('[MQTT-4.4.0-1] an unacknowledged QoS 1 message in flight is resent with DUP and the same packet id after a restart', async (t) => {
    const brokers = brokersOn(t);
    let { port, broker } = await brokers.start();
    const sub = (await RawClient.connect(port, { clientId: 'slow', clean: false, protocolVersion: 4 })).client;
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 't', qos: 1 }] });
    await sub.next(9);
    broker.publish('t', 'm1', { qos: 1 });
    const first = (await sub.next(3)) as PublishPacket;
    assert.equal(first.dup, false);
    sub.destroy(); // never acknowledged
    await eventually(() => broker.inspect.session('slow')?.connected === false);

    await brokers.stop();
    ({ port, broker } = await brokers.start());
    const back = await RawClient.connect(port, { clientId: 'slow', clean: false, protocolVersion: 4 });
    assert.equal(back.connack.sessionPresent, true);
    const again = (await back.client.next(3)) as PublishPacket;
    assert.equal(again.payload.toString(), 'm1');
    assert.equal(again.dup, true, 'resent with DUP');
    assert.equal(again.packetId, first.packetId, 'with the same packet id');
    back.client.send({ type: 4, packetId: again.packetId! });
    await eventually(() => broker.inspect.session('slow')?.inflight === 0);
    back.client.destroy();
  });

  it('expiry deadlines count through the downtime: a session whose expiry passed is gone (and its keys), the other one is back', async (t) => {
    const clock = new FakeClock(Date.now());
    const brokers = brokersOn(t, { clock });
    let { url } = await brokers.start();
    for (const [id, expiry] of [['short', 10], ['long', 1000]] as const) {
      const { client } = await connectMqtt(t, url, { clientId: id, protocolVersion: 5, properties: { sessionExpiryInterval: expiry } });
      await client.subscribeAsync('x', { qos: 1 });
      await end(client);
    }
    await brokers.stop();
    clock.time += 11_000; // down 11 s
    ({ url } = await brokers.start());
    const short = await connectMqtt(t, url, { clientId: 'short', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 10 } });
    assert.equal(short.sessionPresent, false, 'expired during the downtime');
    const long = await connectMqtt(t, url, { clientId: 'long', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 1000 } });
    assert.equal(long.sessionPresent, true);
    // The new 'short' session is kept (expiry 10 s) but has no subscription: the old one's are gone from Redis.
    await eventually(() => true);
    assert.equal(await redis.hlen(`${brokers.prefix}:session:{short}:subs`), 0);
    assert.equal(await redis.hlen(`${brokers.prefix}:session:{long}:subs`), 1);
  });

  it('a clean session (expiry 0, 3.1.1 clean 1) writes nothing to Redis', async (t) => {
    const brokers = brokersOn(t);
    const { url, store } = await brokers.start();
    for (const o of [{ clientId: 'c5', protocolVersion: 5, properties: { sessionExpiryInterval: 0 } }, { clientId: 'c4', protocolVersion: 4, clean: true }] as IClientOptions[]) {
      const { client } = await connectMqtt(t, url, o);
      await client.subscribeAsync('c/#', { qos: 1 });
      const got = messages(client, 2);
      await client.publishAsync('c/1', Buffer.from('a'), { qos: 1 });
      await client.publishAsync('c/2', Buffer.from('b'), { qos: 1 });
      assert.equal((await got).length, 2);
      await end(client);
    }
    assert.equal(store.writer.stats.commits, 0, 'no MULTI sent');
    assert.deepEqual(await redis.keys(`${brokers.prefix}:*`), []);
  });

  it('[MQTT-4.3.3-9] an incoming QoS 2 message acknowledged with PUBREC before a restart is not delivered again when resent after it', async (t) => {
    const brokers = brokersOn(t);
    let { port } = await brokers.start();
    const v5 = (clientId: string) => ({ clientId, protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 3600 } });
    const sub = (await RawClient.connect(port, v5('q2-sub'))).client;
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'q2', qos: 1 }] });
    await sub.next(9);
    sub.send({ type: 14, reasonCode: 0 });
    await sub.waitClosed();
    const pub = (await RawClient.connect(port, v5('q2-pub'))).client;
    pub.send({ type: 3, topic: 'q2', payload: Buffer.from('once'), qos: 2, retain: false, dup: false, packetId: 7 });
    assert.equal(((await pub.next(5)) as PubAckLikePacket).packetId, 7);
    pub.destroy(); // PUBREL never sent
    await brokers.stop();
    ({ port } = await brokers.start());
    const again = await RawClient.connect(port, v5('q2-pub'));
    assert.equal(again.connack.sessionPresent, true);
    again.client.send({ type: 3, topic: 'q2', payload: Buffer.from('once'), qos: 2, retain: false, dup: true, packetId: 7 });
    await again.client.next(5);
    again.client.send({ type: 6, packetId: 7 });
    await again.client.next(7);
    again.client.destroy();
    const back = await RawClient.connect(port, v5('q2-sub'));
    const m = (await back.client.next(3)) as PublishPacket;
    assert.equal(m.payload.toString(), 'once');
    back.client.send({ type: 4, packetId: m.packetId! });
    await assert.rejects(back.client.next(3, 300), 'delivered once');
    back.client.destroy();
  });

  it('Redis gone: a QoS 1 PUBLISH that cannot be stored is refused with a reason code (5.0: 0x97), never acknowledged', async (t) => {
    const own = await RedisServer.start();
    t.after(() => own.close());
    const brokers = brokersOn(t, { redis: own });
    const { port } = await brokers.start();
    const sub = (await RawClient.connect(port, { clientId: 'offline', protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } })).client;
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'f', qos: 1 }] });
    await sub.next(9);
    sub.send({ type: 14, reasonCode: 0 });
    await sub.waitClosed();
    const pub = (await RawClient.connect(port, { clientId: 'p', protocolVersion: 5 })).client;
    pub.send({ type: 3, topic: 'f', payload: Buffer.from('stored'), qos: 1, retain: false, dup: false, packetId: 1 });
    assert.equal(((await pub.next(4)) as PubAckLikePacket).reasonCode ?? 0, 0, 'stored: success');
    await own.stop();
    pub.send({ type: 3, topic: 'f', payload: Buffer.from('lost'), qos: 1, retain: false, dup: false, packetId: 2 });
    const refused = (await pub.next(4)) as PubAckLikePacket;
    assert.equal(refused.packetId, 2);
    assert.equal(refused.reasonCode, 0x97, 'Quota exceeded: not stored');
    pub.destroy();
  });

  it('createBroker refuses sessionStore together with a storage other than memory: one line naming the option', async (t) => {
    const store = await openRedisSessionStore(server.url, { prefix: 'refused' });
    t.after(async () => {
      store.close();
      await store.whenClosed();
    });
    assert.throws(() => createBroker({ sessionStore: store, storage: { type: 'sqlite', dir: '/nonexistent' } }), /createBroker: sessionStore: give either sessionStore or storage, not both/);
  });
});
