// The cluster on a 3-master Redis Cluster: what it shares with one server (redis-ha-shared.ts), run ids, and a restart.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { Cluster } from 'ioredis';
import { ownerKey } from '../../src/cluster/ownership.js';
import { redisRunId } from '../../src/cluster/redis-forms.js';
import { noRedisHa, RedisClusterGroup } from '../helpers/redis-ha.js';
import { describeOrSkip } from '../helpers/skip.js';
import { delay, eventually } from '../helpers/wait.js';
import { inbox, startNodes } from './nodes.js';
import { sameAsOneServer } from './redis-ha-shared.js';

/** `promise`, or a failure naming `what` after `ms` (a step that never ends fails the test instead of the file). */
function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)));
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

describeOrSkip('cluster on a Redis Cluster (three masters)', noRedisHa, () => {
  let group: RedisClusterGroup;
  before(async () => {
    group = await RedisClusterGroup.start();
  });
  after(async () => {
    await group?.close();
  });

  sameAsOneServer(() => group);

  it('which Redis this is (its run_id, to tell a restart) is every master\'s, the same whichever node answers', async () => {
    const redis = new Cluster(group.ports.map((port) => ({ host: '127.0.0.1', port })));
    try {
      await redis.ping(); // connected: it knows the masters
      const ids = new Set<string | undefined>();
      for (let i = 0; i < 12; i++) ids.add(await redisRunId(redis));
      assert.equal(ids.size, 1, `one identity, not one per node asked: ${[...ids].join(' | ')}`);
      assert.equal([...ids][0]!.split(',').length, 3, 'the three masters');
    } finally {
      redis.disconnect();
    }
  });

  it('the whole Redis Cluster restarted empty: the nodes reconnect, write back their Client IDs and retained messages, and messages cross again', async (t) => {
    const [a, b] = await startNodes(t, group, ['a', 'b']);
    // Several Client IDs held on A: their owner keys fall in slots of different Redis nodes.
    const held = await Promise.all(['h0', 'h1', 'h2', 'h3', 'h4', 'h5'].map((id) => a!.mqtt(id, { protocolVersion: 5 })));
    const sub = await a!.mqtt('sub', { protocolVersion: 5 });
    const got = inbox(sub);
    await sub.subscribeAsync('ha/rs/#', { qos: 1 });
    await eventually(() => b!.view().remoteRoutes === 1, 5000, 'the route of A on B');
    await held[0]!.publishAsync('ha/kept', 'kept', { qos: 1, retain: true });
    await eventually(() => b!.broker.inspect.retained('ha/kept') !== undefined, 3000, 'the retained message on B');

    await withDeadline(group.restart(), 30_000, 'the Redis Cluster restarted');
    await eventually(() => a!.view().connected && b!.view().connected, 15_000, 'both nodes reconnected');
    await eventually(() => b!.view().remoteRoutes === 1 && a!.view().nodes.length === 2 && b!.view().nodes.length === 2, 15_000, 'routes and nodes announced again');

    const pub = await withDeadline(b!.mqtt('pub', { protocolVersion: 5, connectTimeout: 5000 }), 10_000, 'a CONNECT on B after the restart');
    await withDeadline(pub.publishAsync('ha/rs/after', 'after', { qos: 1 }), 10_000, 'PUBACK on B after the restart');
    await eventually(() => got.length >= 1, 10_000, 'a QoS 1 message across after the restart').catch((err: Error) => {
      // Said with what each node forwarded and read, to tell a message not sent from one not read.
      throw new Error(`${err.message}; A: ${JSON.stringify(a!.view().forwarded)}, B: ${JSON.stringify(b!.view().forwarded)}, B's routes ${b!.view().remoteRoutes}`);
    });
    await delay(100);
    assert.deepEqual(got.map((p) => p.payload.toString()), ['after'], 'once');
    // The retained message was offered back to Redis (a node that joins later loads it from there), and the
    // Client IDs held on A were written back (their keys on different masters: a catch-up that met CLUSTERDOWN
    // while the last master came back is tried again, else a takeover on B would not kick A).
    const cluster = a!.view().cluster;
    const deadline = Date.now() + 10_000;
    for (const key of [`${cluster}:retained`, ...['h0', 'h1', 'h2', 'h3', 'h4', 'h5'].map((id) => ownerKey(cluster, id))]) {
      while (!(await group.keyExists(key))) {
        assert.ok(Date.now() < deadline, `timed out waiting for ${key} written back`);
        await delay(50);
      }
    }
    // A hears the cluster's pub/sub again (its subscriber moved to a restarted node): a retained change made
    // on B reaches it. Then the Client IDs held on A, written back, are taken over by a CONNECT on B.
    await pub.publishAsync('ha/probe', 'after', { qos: 1, retain: true });
    await eventually(() => a!.broker.inspect.retained('ha/probe')?.payload.toString() === 'after', 10_000, 'A to hear pub/sub again after the restart');
    const disconnected = new Promise<number | undefined>((resolve) => held[3]!.once('disconnect', (packet) => resolve(packet.reasonCode)));
    await withDeadline(b!.mqtt('h3', { protocolVersion: 5, connectTimeout: 5000 }), 10_000, 'the takeover CONNECT on B');
    assert.equal(await withDeadline(disconnected, 10_000, 'DISCONNECT 0x8E on A'), 0x8e, 'taken over after the restart [MQTT-3.1.4-3]');
  });
});
