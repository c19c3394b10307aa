// Retained messages cluster-wide: set on one node, received by a new subscriber on another; cleared everywhere
// by an empty payload [MQTT-3.3.1-10]; Message Expiry everywhere [MQTT-3.3.2-5]; a node that starts later
// loads them; the nodes' own $SYS topics stay per node.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { PublishPacket } from '../../../src/protocol/packets.js';
import { RawClient } from '../../helpers/raw-client.js';
import { describeOrSkip } from '../../helpers/skip.js';
import { eventually } from '../../helpers/wait.js';
import { TestCluster } from './nodes.js';
import { redisMissing, startRedis, type RunningRedis } from './redis-server.js';

async function subscribe(port: number, filter: string, version: 4 | 5 = 4): Promise<RawClient> {
  const { client } = await RawClient.connect(port, { protocolVersion: version });
  client.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: filter, qos: 1 }] } as never);
  await client.next(9);
  return client;
}

async function publishRetained(port: number, topic: string, payload: string, properties?: object): Promise<void> {
  const { client } = await RawClient.connect(port, { protocolVersion: 5 });
  client.send({ type: 3, topic, payload: Buffer.from(payload), qos: 1, retain: true, packetId: 1, dup: false, properties } as never);
  await client.next(4);
  client.destroy();
}

describeOrSkip('cluster: retained messages across nodes', redisMissing(), () => {
  let redis: RunningRedis;
  let cluster: TestCluster;
  before(async () => {
    redis = await startRedis();
    cluster = new TestCluster(redis);
    for (const name of ['a', 'b', 'c']) await cluster.start(name);
  });
  after(async () => {
    await cluster?.stop();
    await redis?.stop();
  });

  it('a retained message set on node a reaches a new subscriber on node c, and an empty payload on b clears it everywhere [MQTT-3.3.1-10]', async () => {
    const [a, b, c] = cluster.nodes;
    await publishRetained(a!.port, 'r/one', 'hello');
    await eventually(() => c!.broker.inspect.retained('r/one') !== undefined, 2000, 'the retained message on c');
    const sub = await subscribe(c!.port, 'r/#');
    const got = (await sub.next(3)) as PublishPacket;
    assert.equal(got.topic, 'r/one');
    assert.equal(got.payload.toString(), 'hello');
    assert.equal(got.retain, true, 'sent because retained [MQTT-3.3.1-8]');
    sub.destroy();

    await publishRetained(b!.port, 'r/one', '');
    await eventually(() => cluster.nodes.every((n) => n.broker.inspect.retained('r/one') === undefined), 2000, 'cleared on every node');
    const late = await subscribe(a!.port, 'r/#');
    assert.deepEqual(await late.collect(150, 3), []);
    late.destroy();
  });

  it('the last of concurrent retained messages on one topic wins on every node alike', async () => {
    await Promise.all(cluster.nodes.flatMap((n, i) => [0, 1, 2].map((k) => publishRetained(n.port, 'r/race', `${n.name}${k}-${i}`))));
    // Every replica ends with what the hash holds: the last write in Redis' order (replicas may agree on an
    // earlier one for a moment while later events are on their way, so the check is against Redis).
    const deadline = Date.now() + 3000;
    for (;;) {
      const stored = await cluster.nodes[0]!.redis.hget(`${cluster.prefix}:retained`, 'r/race');
      const seen = cluster.nodes.map((n) => n.broker.inspect.retained('r/race')?.payload.toString('base64'));
      if (stored !== null && seen.every((p) => p !== undefined && stored.includes(`"${p}"`))) break;
      assert.ok(Date.now() < deadline, `replicas ${JSON.stringify(seen)} never all matched Redis ${stored}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 200));
    const final = await cluster.nodes[0]!.redis.hget(`${cluster.prefix}:retained`, 'r/race');
    for (const n of cluster.nodes) assert.ok(final!.includes(`"${n.broker.inspect.retained('r/race')!.payload.toString('base64')}"`), `${n.name} holds what Redis holds`);
  });

  it('Message Expiry holds on every node: an expired retained message is not sent [MQTT-3.3.2-5]', async () => {
    const [a, , c] = cluster.nodes;
    await publishRetained(a!.port, 'r/brief', 'soon gone', { messageExpiryInterval: 1 });
    await eventually(() => c!.broker.inspect.retained('r/brief') !== undefined, 2000, 'on c');
    await eventually(() => c!.broker.inspect.retainedMatching('r/brief').length === 0, 3000, 'expired on c');
    const sub = await subscribe(c!.port, 'r/brief');
    assert.deepEqual(await sub.collect(150, 3), []);
    sub.destroy();
  });

  it('a node that joins later loads the retained messages; $SYS topics stay per node', async () => {
    const [a] = cluster.nodes;
    await publishRetained(a!.port, 'r/kept', 'for later');
    a!.broker.publish('$SYS/broker/test', 'a only', { retain: true });
    const d = await cluster.start('d');
    assert.equal(d.broker.inspect.retained('r/kept')?.payload.toString(), 'for later');
    assert.equal(d.broker.inspect.retained('$SYS/broker/test'), undefined);
    assert.equal(await a!.redis.hexists(`${cluster.prefix}:retained`, '$SYS/broker/test'), 0);
  });
});
