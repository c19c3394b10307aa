// Client IDs cluster-wide: a CONNECT on one node takes over the connection with that Client ID on another
// [MQTT-3.1.4-3], and simultaneous CONNECTs with one Client ID over 3 nodes end with exactly one connection.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { DisconnectPacket } from '../../../src/protocol/packets.js';
import { RawClient } from '../../helpers/raw-client.js';
import { eventually } from '../../helpers/wait.js';
import { describeOrSkip } from '../../helpers/skip.js';
import { TestCluster } from './nodes.js';
import { redisMissing, startRedis, type RunningRedis } from './redis-server.js';

describeOrSkip('cluster: Client ID ownership across nodes', redisMissing(), () => {
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

  const connectedCount = (clientId: string) => cluster.nodes.filter((n) => [...n.broker.inspect.connections()].some((c) => c.clientId === clientId)).length;

  it('a 5.0 connection taken over from another node gets DISCONNECT 0x8E Session taken over [MQTT-3.1.4-3]', async () => {
    const [a, b] = cluster.nodes;
    const { client: first, connack } = await RawClient.connect(a!.port, { protocolVersion: 5, clientId: 'dup5' });
    assert.equal(connack.reasonCode, 0);
    const { client: second, connack: connack2 } = await RawClient.connect(b!.port, { protocolVersion: 5, clientId: 'dup5' });
    assert.equal(connack2.reasonCode, 0);
    const disconnect = (await first.next(14)) as DisconnectPacket;
    assert.equal(disconnect.reasonCode, 0x8e);
    await first.waitClosed();
    await eventually(() => connectedCount('dup5') === 1, 2000, 'one connection of dup5');
    assert.ok([...b!.broker.inspect.connections()].some((c) => c.clientId === 'dup5'));
    assert.equal(second.closed, false);
    second.destroy();
  });

  it('a 3.1.1 connection taken over from another node is closed, and its will published [MQTT-3.1.4-3]', async () => {
    const [a, , c] = cluster.nodes;
    const { client: watcher } = await RawClient.connect(a!.port, { clientId: 'watcher' });
    watcher.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'wills/#', qos: 0 }] } as never);
    await watcher.next(9);
    const { client: first } = await RawClient.connect(a!.port, { clientId: 'dup4', will: { topic: 'wills/dup4', payload: Buffer.from('gone'), qos: 0, retain: false } });
    const { client: second, connack } = await RawClient.connect(c!.port, { clientId: 'dup4' });
    assert.equal(connack.reasonCode, 0);
    await first.waitClosed();
    assert.equal(first.packets.filter((p) => p.type === 14).length, 0, 'no DISCONNECT in 3.1.1');
    // A taken-over connection ended without DISCONNECT: its will goes out (3.1.2.5).
    const will = await watcher.next(3);
    assert.equal((will as { topic: string }).topic, 'wills/dup4');
    await eventually(() => connectedCount('dup4') === 1, 2000, 'one connection of dup4');
    watcher.destroy();
    second.destroy();
  });

  it('a session left on another node is dropped there when its client comes back elsewhere, and a delayed will is cancelled [MQTT-3.1.3-9]', async () => {
    const [a, b] = cluster.nodes;
    const { client: first } = await RawClient.connect(a!.port, {
      protocolVersion: 5,
      clientId: 'mover',
      clean: false,
      properties: { sessionExpiryInterval: 60 },
      will: { topic: 'wills/mover', payload: Buffer.from('x'), qos: 0, retain: false, properties: { willDelayInterval: 30 } },
    });
    first.destroy(); // lost without DISCONNECT: the will waits out its delay on node a
    await eventually(() => a!.broker.inspect.footprint().pendingWills === 1, 2000, 'the will waiting on a');
    const { client: second, connack } = await RawClient.connect(b!.port, { protocolVersion: 5, clientId: 'mover', clean: false, properties: { sessionExpiryInterval: 60 } });
    assert.equal(connack.reasonCode, 0);
    await eventually(() => a!.broker.inspect.footprint().pendingWills === 0 && ![...a!.broker.inspect.sessions()].some((s) => s.clientId === 'mover'), 2000, 'a let the session go');
    second.destroy();
  });

  it('100 simultaneous CONNECTs with one Client ID over 3 nodes end with exactly one connection and one session', async () => {
    const attempts = await Promise.all(
      Array.from({ length: 100 }, (_, i) => RawClient.open(cluster.nodes[i % 3]!.port, 5)),
    );
    for (const client of attempts) client.send({ type: 1, protocolName: 'MQTT', protocolVersion: 5, clean: true, keepAlive: 0, clientId: 'race' } as never);
    // Every attempt ends: accepted then taken over, refused (0x89: another claim was newer), or still connected.
    await eventually(() => attempts.filter((c) => !c.closed).length === 1, 20_000, 'a single survivor');
    await new Promise((r) => setTimeout(r, 300)); // any late kick would close the survivor now
    const open = attempts.filter((c) => !c.closed);
    assert.equal(open.length, 1);
    assert.equal(connectedCount('race'), 1);
    const sessions = cluster.nodes.flatMap((n) => [...n.broker.inspect.sessions()].filter((s) => s.clientId === 'race'));
    assert.equal(sessions.length, 1);
    // The survivor's node is the owner Redis names.
    const owner = await cluster.nodes[0]!.redis.get(`${cluster.prefix}:client:race`);
    const holder = cluster.nodes.find((n) => [...n.broker.inspect.connections()].some((c) => c.clientId === 'race'))!;
    assert.ok(owner?.startsWith(`${holder.name} `), `Redis names ${owner}, the connection is on ${holder.name}`);
    for (const c of attempts) c.destroy();
  });

  it('a claim is released when its connection ends: no node holds one, and the owner record expires', async () => {
    // Every client of the tests above is gone (destroyed): their disconnects released the claims.
    await eventually(() => cluster.nodes.every((n) => n.ownership.ownership.size === 0), 3000, 'no claim left').catch((err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(cluster.nodes.map((n) => [n.name, n.ownership.ownership.held()]))}`);
    });
    const ttl = await cluster.nodes[0]!.redis.pttl(`${cluster.prefix}:client:dup5`);
    assert.ok(ttl > 0 && ttl <= 60_000, `owner record expires (PTTL ${ttl})`);
  });
});
