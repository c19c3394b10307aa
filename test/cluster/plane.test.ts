// The cluster's message plane on a real redis-server: nodes in this process, MQTT.js clients. A message
// published on one node reaches the subscribers of the others (and only the nodes with a matching route),
// at QoS 0/1/2 with 3.1.1 and 5.0 clients, in order, exactly once at QoS 2, once per shared group.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { IPublishPacket, MqttClient } from 'mqtt';
import { noRedis, RedisServer } from '../helpers/redis.js';
import { describeOrSkip } from '../helpers/skip.js';
import { eventually } from '../helpers/wait.js';
import { startNodes } from './nodes.js';

function inbox(client: MqttClient): IPublishPacket[] {
  const got: IPublishPacket[] = [];
  client.on('message', (_topic, _payload, packet) => got.push(packet));
  return got;
}

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
});
