// A node made by the `cluster` option alone (createBroker({ cluster })) has both halves of the cluster: the
// message plane (plane.test.ts) and the ownership part (owner/*): Client IDs taken over across nodes,
// retained messages and wills cluster-wide. The owner tests inject those parts by hand; this checks the facade
// wires them.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { noRedis, RedisServer } from '../helpers/redis.js';
import { describeOrSkip } from '../helpers/skip.js';
import { eventually } from '../helpers/wait.js';
import { inbox, startNodes } from './nodes.js';

describeOrSkip('a node of the `cluster` option: takeover, retained messages and wills across nodes', noRedis, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.close();
  });

  it('a Client ID connected on node A is taken over by a CONNECT on node B: DISCONNECT 0x8E on A [MQTT-3.1.4-3]', async (t) => {
    const [a, b] = await startNodes(t, redis, ['a', 'b']);
    const first = await a!.mqtt('same-id', { protocolVersion: 5 });
    const disconnected = new Promise<number | undefined>((resolve) => first.once('disconnect', (packet) => resolve(packet.reasonCode)));
    const second = await b!.mqtt('same-id', { protocolVersion: 5 });
    assert.equal(await disconnected, 0x8e, 'Session taken over');
    await eventually(() => a!.broker.inspect.counts().connections === 0, 3000, 'the old connection gone from A');
    assert.equal(second.connected, true);
    assert.equal(b!.broker.inspect.counts().connections, 1);
  });

  it('a retained message set on node A reaches a new subscriber on node B; an empty payload clears it on both', async (t) => {
    const [a, b] = await startNodes(t, redis, ['a', 'b']);
    const pub = await a!.mqtt('pub');
    await pub.publishAsync('r/1', 'kept', { qos: 1, retain: true });
    await eventually(() => b!.broker.inspect.retained('r/1')?.payload.toString() === 'kept', 3000, 'the retained message on B');
    const sub = await b!.mqtt('sub');
    const got = inbox(sub);
    await sub.subscribeAsync('r/#', { qos: 1 });
    await eventually(() => got.length === 1, 3000, 'the retained message delivered on B');
    assert.equal(got[0]!.retain, true);
    assert.equal(got[0]!.payload.toString(), 'kept');
    await pub.publishAsync('r/1', '', { qos: 1, retain: true });
    await eventually(() => b!.broker.inspect.retained('r/1') === undefined && a!.broker.inspect.retained('r/1') === undefined, 3000, 'cleared on both nodes');
  });
});
