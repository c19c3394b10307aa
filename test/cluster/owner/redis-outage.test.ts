// Redis goes away and comes back: nodes keep taking Client IDs over locally (one warning for the outage),
// keep retained messages set meanwhile and write them to the cluster once Redis is back.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { DisconnectPacket, PublishPacket } from '../../../src/protocol/packets.js';
import { RawClient } from '../../helpers/raw-client.js';
import { describeOrSkip } from '../../helpers/skip.js';
import { eventually } from '../../helpers/wait.js';
import { TestCluster } from './nodes.js';
import { redisMissing, startRedis, type RunningRedis } from './redis-server.js';

describeOrSkip('cluster: Redis unreachable for a while', redisMissing(), () => {
  let redis: RunningRedis;
  let cluster: TestCluster;
  before(async () => {
    redis = await startRedis();
    cluster = new TestCluster(redis);
    for (const name of ['a', 'b']) await cluster.start(name);
  });
  after(async () => {
    await cluster?.stop();
    await redis?.stop();
  });

  it('takeover stays local with one warning, and retained messages set meanwhile reach the other node once Redis is back', async () => {
    const [a, b] = cluster.nodes;
    await redis.kill();
    await eventually(() => a!.redis.status !== 'ready', 3000, 'a sees Redis gone');
    const { client: first, connack } = await RawClient.connect(a!.port, { protocolVersion: 5, clientId: 'out' });
    assert.equal(connack.reasonCode, 0, 'CONNECT accepted without Redis');
    const { client: second } = await RawClient.connect(a!.port, { protocolVersion: 5, clientId: 'out' });
    assert.equal(((await first.next(14)) as DisconnectPacket).reasonCode, 0x8e, 'taken over on this node [MQTT-3.1.4-3]');
    a!.broker.publish('r/during', 'kept', { retain: true });
    assert.equal(a!.warnings.filter((w) => w.includes('Client IDs are taken over on this node only')).length, 1, 'logged once for the outage');

    await redis.start();
    await eventually(() => b!.broker.inspect.retained('r/during')?.payload.toString() === 'kept', 8000, 'r/during on b');
    const { client: sub } = await RawClient.connect(b!.port);
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'r/#', qos: 0 }] } as never);
    await sub.next(9);
    assert.equal(((await sub.next(3)) as PublishPacket).payload.toString(), 'kept');
    for (const c of [second, sub]) c.destroy();
  });
});
