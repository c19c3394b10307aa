// The cluster on Redis' high-availability forms (docs/cluster.md, "Redis high availability"): two Petrel nodes
// on a Sentinel group (`cluster: { redis: { sentinels, name } }`) and on a 3-master Redis Cluster
// (`cluster: { redis: { nodes } }`), MQTT.js clients: QoS 1 across nodes, Client ID takeover across nodes,
// retained messages across nodes; on Sentinel also a failover the nodes carry on through. (The same features
// on a single redis-server: plane.test.ts, whole-node.test.ts.)
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { noRedisHa, RedisClusterGroup, SentinelGroup } from '../helpers/redis-ha.js';
import { describeOrSkip } from '../helpers/skip.js';
import { eventually } from '../helpers/wait.js';
import { inbox, startNodes, type RedisAt } from './nodes.js';

/** The tests both forms pass: `at()` is where the Redis is (started by the suite's before()). */
function sameAsOneServer(at: () => RedisAt): void {
  it('QoS 1 messages published on node B reach a subscriber on node A, in order, and back', async (t) => {
    const [a, b] = await startNodes(t, at(), ['a', 'b']);
    const subA = await a!.mqtt('sub-a', { protocolVersion: 5 });
    const subB = await b!.mqtt('sub-b', { protocolVersion: 4 });
    const [gotA, gotB] = [inbox(subA), inbox(subB)];
    await subA.subscribeAsync('ha/to-a/#', { qos: 1 });
    await subB.subscribeAsync('ha/to-b/#', { qos: 1 });
    await eventually(() => a!.view().remoteRoutes === 1 && b!.view().remoteRoutes === 1, 5000, 'each node to learn the other route');
    const pubB = await b!.mqtt('pub-b', { protocolVersion: 5 });
    const pubA = await a!.mqtt('pub-a', { protocolVersion: 4 });
    for (let i = 0; i < 20; i++) await pubB.publishAsync(`ha/to-a/${i % 3}`, `m${i}`, { qos: 1 });
    for (let i = 0; i < 20; i++) await pubA.publishAsync(`ha/to-b/${i % 3}`, `m${i}`, { qos: 1 });
    const expected = Array.from({ length: 20 }, (_, i) => `m${i}`);
    await eventually(() => gotA.length >= 20 && gotB.length >= 20, 5000, 'twenty messages each way');
    assert.deepEqual(
      gotA.map((p) => p.payload.toString()),
      expected,
      'B → A: all, once, in order',
    );
    assert.deepEqual(
      gotB.map((p) => p.payload.toString()),
      expected,
      'A → B: all, once, in order',
    );
    assert.ok(gotA.every((p) => p.qos === 1) && gotB.every((p) => p.qos === 1));
    assert.equal(b!.view().forwarded.sent, 20);
    assert.equal(a!.view().forwarded.received, 20);
  });

  it('a Client ID connected on node A is taken over by a CONNECT on node B: DISCONNECT 0x8E on A [MQTT-3.1.4-3]', async (t) => {
    const [a, b] = await startNodes(t, at(), ['a', 'b']);
    const first = await a!.mqtt('same-id', { protocolVersion: 5 });
    const disconnected = new Promise<number | undefined>((resolve) => first.once('disconnect', (packet) => resolve(packet.reasonCode)));
    const second = await b!.mqtt('same-id', { protocolVersion: 5 });
    assert.equal(await disconnected, 0x8e, 'Session taken over');
    await eventually(() => a!.broker.inspect.counts().connections === 0, 3000, 'the old connection gone from A');
    assert.equal(second.connected, true);
    assert.equal(b!.broker.inspect.counts().connections, 1);
  });

  it('a retained message published on node A is delivered to a new subscriber on node B; an empty one clears it on both', async (t) => {
    const [a, b] = await startNodes(t, at(), ['a', 'b']);
    const pub = await a!.mqtt('pub');
    await pub.publishAsync('ha/r/1', 'kept', { qos: 1, retain: true });
    await eventually(() => b!.broker.inspect.retained('ha/r/1')?.payload.toString() === 'kept', 3000, 'the retained message on B');
    const sub = await b!.mqtt('sub', { protocolVersion: 5 });
    const got = inbox(sub);
    await sub.subscribeAsync('ha/r/#', { qos: 1 });
    await eventually(() => got.length === 1, 3000, 'the retained message delivered on B');
    assert.equal(got[0]!.retain, true, '[MQTT-3.3.1-8]');
    assert.equal(got[0]!.payload.toString(), 'kept');
    await pub.publishAsync('ha/r/1', '', { qos: 1, retain: true });
    await eventually(() => b!.broker.inspect.retained('ha/r/1') === undefined && a!.broker.inspect.retained('ha/r/1') === undefined, 3000, 'cleared on both nodes');
  });
}

describeOrSkip('cluster on Redis Sentinel (a master, a replica, one sentinel)', noRedisHa, () => {
  let group: SentinelGroup;
  before(async () => {
    group = await SentinelGroup.start();
  });
  after(async () => {
    await group?.close();
  });

  sameAsOneServer(() => group);

  it('after a failover (SENTINEL FAILOVER) both nodes carry on: a QoS 1 message published afterwards crosses, takeover still works', async (t) => {
    const [a, b] = await startNodes(t, group, ['a', 'b']);
    const sub = await a!.mqtt('sub', { protocolVersion: 5 });
    const got = inbox(sub);
    await sub.subscribeAsync('ha/fo/#', { qos: 1 });
    await eventually(() => b!.view().remoteRoutes === 1, 5000, 'the route of A on B');
    const pub = await b!.mqtt('pub', { protocolVersion: 5 });
    await pub.publishAsync('ha/fo/before', 'before', { qos: 1 });
    await eventually(() => got.length === 1, 5000, 'the message before the failover');

    const oldMaster = await group.masterPort();
    const newMaster = await group.failover();
    assert.notEqual(newMaster, oldMaster);

    // Published after the failover: the QoS 1 PUBACK comes once the new master has the message.
    await pub.publishAsync('ha/fo/after', 'after', { qos: 1 });
    await eventually(() => got.length === 2, 15_000, 'the message after the failover');
    assert.deepEqual(
      got.map((p) => p.payload.toString()),
      ['before', 'after'],
    );
    await eventually(() => a!.view().connected && b!.view().connected && a!.view().nodes.length === 2 && b!.view().nodes.length === 2, 10_000, 'both nodes connected, seeing each other');
    // A route made after the failover reaches the other node, and a takeover is still cluster-wide.
    const sub2 = await b!.mqtt('sub2', { protocolVersion: 5 });
    const got2 = inbox(sub2);
    await sub2.subscribeAsync('ha/fo2', { qos: 1 });
    await eventually(() => a!.view().remoteRoutes === 1, 5000, 'the new route of B on A');
    const pubA = await a!.mqtt('pub-a', { protocolVersion: 5 });
    await pubA.publishAsync('ha/fo2', 'new route', { qos: 1 });
    await eventually(() => got2.length === 1, 5000, 'the message on the new route');
    const disconnected = new Promise<number | undefined>((resolve) => sub.once('disconnect', (packet) => resolve(packet.reasonCode)));
    await b!.mqtt('sub', { protocolVersion: 5 });
    assert.equal(await disconnected, 0x8e, 'taken over after the failover [MQTT-3.1.4-3]');
  });
});

describeOrSkip('cluster on a Redis Cluster (three masters)', noRedisHa, () => {
  let group: RedisClusterGroup;
  before(async () => {
    group = await RedisClusterGroup.start();
  });
  after(async () => {
    await group?.close();
  });

  sameAsOneServer(() => group);
});
