// Redis goes away and comes back (restarted, empty: no persistence): nodes keep taking Client IDs over locally
// (one warning for the outage), keep retained messages set meanwhile and write them to the cluster once Redis
// is back, and write back what the restart lost: the retained messages and the Client IDs they hold.
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
    b!.broker.publish('r/before', 'old', { retain: true });
    const { client: held } = await RawClient.connect(a!.port, { protocolVersion: 5, clientId: 'held' });
    await eventually(() => a!.broker.inspect.retained('r/before') !== undefined, 2000, 'r/before on a');
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
    const got = [(await sub.next(3)) as PublishPacket, (await sub.next(3)) as PublishPacket].map((p) => `${p.topic}=${p.payload.toString()}`).sort();
    // Redis restarted empty (no persistence): the nodes offered their retained messages back.
    assert.deepEqual(got, ['r/before=old', 'r/during=kept']);
    // ... and the Client IDs they hold: a CONNECT on b still takes over the connection on a.
    const { client: moved } = await RawClient.connect(b!.port, { protocolVersion: 5, clientId: 'held' });
    assert.equal(((await held.next(14)) as DisconnectPacket).reasonCode, 0x8e);
    for (const c of [second, sub, moved]) c.destroy();
  });
});
