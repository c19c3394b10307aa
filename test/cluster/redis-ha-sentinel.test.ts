// The cluster on a Redis Sentinel group: what it shares with one server (redis-ha-shared.ts), and a failover.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { noRedisHa, SentinelGroup } from '../helpers/redis-ha.js';
import { describeOrSkip } from '../helpers/skip.js';
import { delay, eventually } from '../helpers/wait.js';
import { inbox, startNodes } from './nodes.js';
import { sameAsOneServer } from './redis-ha-shared.js';

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
    const started = Date.now();
    const newMaster = await group.promote();
    const promoted = Date.now();
    assert.notEqual(newMaster, oldMaster);
    // The nodes move to the new master as soon as the sentinel names it, not when the old master is demoted
    // (seconds later): what they wrote to the old one meanwhile would be lost when it resyncs as a replica.
    const names = async () => (await group.clientNames(newMaster)).filter((n) => /^petrel:[ab]$/.test(n)).sort();
    const moveDeadline = Date.now() + 3000;
    while ((await names()).length < 2) {
      assert.ok(Date.now() < moveDeadline, `the nodes on the new master within 3 s of the promotion (there: ${(await names()).join(', ')})`);
      await delay(50);
    }
    const moved = Date.now();
    await group.settled();
    const failedOver = Date.now();

    // Published after the failover: the QoS 1 PUBACK comes once the new master has the message.
    await pub.publishAsync('ha/fo/after', 'after', { qos: 1 });
    const acked = Date.now();
    await eventually(() => got.length === 2, 15_000, 'the message after the failover');
    t.diagnostic(`failover: new master named in ${promoted - started} ms, both nodes on it ${moved - promoted} ms later, the old master a replica after ${failedOver - started} ms; then PUBACK in ${acked - failedOver} ms, delivered on A ${Date.now() - acked} ms later`);
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

