// The cluster's message plane on a real redis-server: nodes in this process, MQTT.js clients. A message
// published on one node reaches the subscribers of the others (and only the nodes with a matching route),
// at QoS 0/1/2 with 3.1.1 and 5.0 clients, in order, exactly once at QoS 2, once per shared group.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, it } from 'node:test';
import { noRedis, RedisServer } from '../helpers/redis.js';
import { describeOrSkip } from '../helpers/skip.js';
import { eventually } from '../helpers/wait.js';
import { inbox, startNodes } from './nodes.js';

describeOrSkip('cluster plane: messages between nodes', noRedis, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.close();
  });

  it('a subscriber on node A gets what is published on node B, QoS 0/1/2, 3.1.1 and 5.0; node C without a route gets nothing', async (t) => {
    const [a, b, c] = await startNodes(t, redis, ['a', 'b', 'c']);
    const subs = [await a!.mqtt('sub4', { protocolVersion: 4 }), await a!.mqtt('sub5', { protocolVersion: 5 })];
    const boxes = subs.map(inbox);
    for (const s of subs) await s.subscribeAsync('x/#', { qos: 2 });
    await eventually(() => b!.view().remoteRoutes === 1 && c!.view().remoteRoutes === 1, 3000, 'the route of A on B and C');
    for (const v of [4, 5] as const) {
      const pub = await b!.mqtt(`pub${v}`, { protocolVersion: v });
      for (const qos of [0, 1, 2] as const) await pub.publishAsync(`x/v${v}/q${qos}`, `v${v}q${qos}`, { qos });
    }
    for (const box of boxes) {
      await eventually(() => box.length === 6, 3000, 'six messages on each subscriber');
      assert.deepEqual(box.map((p) => `${p.topic}=${p.payload.toString()}@${p.qos}`).sort(), ['x/v4/q0=v4q0@0', 'x/v4/q1=v4q1@1', 'x/v4/q2=v4q2@2', 'x/v5/q0=v5q0@0', 'x/v5/q1=v5q1@1', 'x/v5/q2=v5q2@2']);
    }
    // C has no subscription: nothing went through its inbox. A received each message once (merged for its two subscribers).
    assert.equal(c!.view().forwarded.received, 0);
    assert.equal(a!.view().forwarded.received, 6);
    assert.equal(b!.view().forwarded.sent, 6);
  });

  it('5.0 properties, message expiry and Retain As Published cross between nodes intact', async (t) => {
    const [a, b] = await startNodes(t, redis, ['a', 'b']);
    const sub = await a!.mqtt('sub', { protocolVersion: 5 });
    const got = inbox(sub);
    await sub.subscribeAsync('p/#', { qos: 1, rap: true });
    await eventually(() => b!.view().remoteRoutes === 1, 3000, 'the route of A on B');
    const pub = await b!.mqtt('pub', { protocolVersion: 5 });
    const properties = {
      payloadFormatIndicator: true,
      contentType: 'text/plain',
      responseTopic: 'p/reply',
      correlationData: Buffer.from([0, 1, 2, 255]),
      userProperties: { k: 'v', multi: ['1', '2'] },
      messageExpiryInterval: 60,
    };
    await pub.publishAsync('p/1', 'with properties', { qos: 1, retain: true, properties });
    await eventually(() => got.length === 1, 3000, 'the message');
    const p = got[0]!;
    assert.equal(p.payload.toString(), 'with properties');
    assert.equal(p.retain, true, 'Retain As Published');
    assert.equal(p.properties?.contentType, 'text/plain');
    assert.equal(p.properties?.responseTopic, 'p/reply');
    assert.deepEqual(p.properties?.correlationData, Buffer.from([0, 1, 2, 255]));
    assert.deepEqual({ ...p.properties?.userProperties }, { k: 'v', multi: ['1', '2'] });
    assert.equal(p.properties?.payloadFormatIndicator, true);
    const expiry = p.properties?.messageExpiryInterval;
    assert.ok(expiry !== undefined && expiry <= 60 && expiry >= 58, `remaining expiry ${expiry}`);
    // The retained store is cluster-wide (redis-retained.ts): B keeps it at once, A through Redis.
    assert.equal(b!.broker.inspect.retained('p/1')?.payload.toString(), 'with properties');
    await eventually(() => a!.broker.inspect.retained('p/1')?.payload.toString() === 'with properties', 3000, 'the retained message on A');
  });
});

describeOrSkip('cluster plane: order, exactly once, shared subscriptions', noRedis, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.close();
  });

  it("keeps each publisher's order per topic, and QoS 2 is exactly once end to end", async (t) => {
    const [a, b] = await startNodes(t, redis, ['a', 'b']);
    const sub = await a!.mqtt('sub', { protocolVersion: 5 });
    const got = inbox(sub);
    await sub.subscribeAsync('o/#', { qos: 2 });
    await eventually(() => b!.view().remoteRoutes === 1, 3000, 'the route on B');
    const pub1 = await b!.mqtt('pub1', { protocolVersion: 5 });
    const pub2 = await b!.mqtt('pub2', { protocolVersion: 4 });
    const n = 300;
    const sent: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      sent.push(pub1.publishAsync('o/q1', String(i), { qos: 1 }));
      sent.push(pub2.publishAsync('o/q2', String(i), { qos: 2 }));
    }
    await Promise.all(sent);
    await eventually(() => got.length >= 2 * n, 10_000, `${2 * n} messages`);
    // A moment for any duplicate to show up.
    await new Promise((r) => setTimeout(r, 200));
    const seq = (topic: string) => got.filter((p) => p.topic === topic).map((p) => Number(p.payload.toString()));
    const expected = Array.from({ length: n }, (_, i) => i);
    assert.deepEqual(seq('o/q1'), expected, 'QoS 1: all, in order');
    assert.deepEqual(seq('o/q2'), expected, 'QoS 2: each once, in order');
    assert.equal(got.length, 2 * n);
  });

  it('a shared subscription gets each message once across the nodes, spread over them; a plain one gets all', async (t) => {
    const [a, b, c] = await startNodes(t, redis, ['a', 'b', 'c']);
    const members = [await a!.mqtt('m-a', { protocolVersion: 5 }), await b!.mqtt('m-b', { protocolVersion: 5 }), await c!.mqtt('m-c', { protocolVersion: 5 })];
    const boxes = members.map(inbox);
    for (const m of members) await m.subscribeAsync('$share/g/s/#', { qos: 1 });
    const plain = await c!.mqtt('plain');
    const plainBox = inbox(plain);
    await plain.subscribeAsync('s/#', { qos: 1 });
    await eventually(() => a!.view().remoteRoutes === 3, 3000, 'the routes of B and C on A');
    const pub = await a!.mqtt('pub');
    const n = 60;
    for (let i = 0; i < n; i++) await pub.publishAsync(`s/${i % 3}`, String(i), { qos: 1 });
    await eventually(() => boxes.reduce((k, box) => k + box.length, 0) >= n && plainBox.length === n, 5000, 'every message delivered');
    await new Promise((r) => setTimeout(r, 200));
    const all = boxes.flatMap((box) => box.map((p) => Number(p.payload.toString()))).sort((x, y) => x - y);
    assert.deepEqual(all, Array.from({ length: n }, (_, i) => i), 'each message to exactly one member of the group');
    for (const box of boxes) assert.ok(box.length >= n / 6, `every node's member gets a share (${boxes.map((x) => x.length).join('/')})`);
    assert.equal(plainBox.length, n);
  });
});

const hasMosquittoClients = spawnSync('mosquitto_pub', ['--help']).error === undefined;

describeOrSkip('cluster plane: Mosquitto command line tools', noRedis || (hasMosquittoClients ? false : 'mosquitto_pub / mosquitto_sub not installed'), () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.close();
  });

  it('mosquitto_sub on node A receives what mosquitto_pub sends to node B (3.1.1 and 5, QoS 1 and 2)', async (t) => {
    const [a, b] = await startNodes(t, redis, ['a', 'b']);
    const run = promisify(execFile);
    for (const [v, qos] of [['mqttv311', '1'], ['mqttv5', '2']] as const) {
      const sub = run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(a!.port), '-V', v, '-t', `m/${v}`, '-q', qos, '-C', '1', '-W', '5']);
      await eventually(() => b!.view().remoteRoutes === 1, 3000, 'the route of mosquitto_sub on B');
      await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b!.port), '-V', v, '-t', `m/${v}`, '-q', qos, '-m', `hello ${v}`]);
      const { stdout } = await sub;
      assert.equal(stdout.trim(), `hello ${v}`);
      await eventually(() => b!.view().remoteRoutes === 0, 3000, 'the route gone with mosquitto_sub');
    }
  });
});
