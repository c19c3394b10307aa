// Persistent sessions cluster-wide: a client that reconnects through another node finds its session there
// (subscriptions, queued messages, in-flight messages), whether the node that held it is alive (it lets the
// session go first), was killed with SIGKILL, or restarted. Sessions live in the cluster's Redis.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { promisify } from 'node:util';
import { GRACE_MS } from '../../src/cluster/handover.js';
import { PacketType } from '../../src/protocol/constants.js';
import type { PublishPacket } from '../../src/protocol/packets.js';
import { startChildBroker } from '../helpers/child-broker.js';
import { RawClient } from '../helpers/raw-client.js';
import { noRedis, redisCommand, RedisServer } from '../helpers/redis.js';
import { describeOrSkip } from '../helpers/skip.js';
import { delay, eventually } from '../helpers/wait.js';
import { startNode, startNodes } from './nodes.js';

const run = promisify(execFile);
const hasMosquittoClients = spawnSync('mosquitto_sub', ['--help']).error === undefined;

describeOrSkip('cluster: a persistent session resumes on another node', noRedis, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.close();
  });

  for (const protocolVersion of [4, 5] as const) {
    it(`MQTT ${protocolVersion === 5 ? '5.0' : '3.1.1'}: messages queued on node A while the client was away are delivered on node B, in order, and its subscription goes on there [MQTT-3.1.2-4] [MQTT-3.2.2-2]`, async (t) => {
      const [a, b] = await startNodes(t, redis, ['a', 'b']);
      const persistent = protocolVersion === 5 ? { clean: false, properties: { sessionExpiryInterval: 3600 } } : { clean: false };
      const first = await a!.mqtt('roamer', { protocolVersion, ...persistent });
      await first.subscribeAsync('cmd/#', { qos: 2 });
      await first.endAsync();
      await eventually(() => a!.broker.inspect.hasSession('roamer') && !a!.broker.inspect.isConnected('roamer'), 3000, 'the session offline on A');
      // Published on B: the route leads to A, which queues them (and records them in Redis).
      const pub = await b!.mqtt('publisher');
      for (let i = 0; i < 5; i++) await pub.publishAsync('cmd/x', `m${i}`, { qos: 1 });
      await pub.publishAsync('cmd/x', 'q2', { qos: 2 });
      await eventually(() => a!.broker.inspect.session('roamer')?.queued === 6, 3000, 'six messages queued on A');

      const { sessionPresent, got } = await b!.session('roamer', { protocolVersion, ...persistent });
      assert.equal(sessionPresent, true, 'CONNACK Session Present 1 on B');
      await eventually(() => got.length === 6, 3000, 'the queued messages on B');
      assert.deepEqual(got.map((p) => p.payload.toString()), ['m0', 'm1', 'm2', 'm3', 'm4', 'q2']);
      assert.deepEqual(got.map((p) => p.qos), [1, 1, 1, 1, 1, 2]);
      // B holds it, and its subscription is served on B now, wherever the publisher is: published on A while A
      // still hands on what arrives for it (handover.ts GRACE_MS), and after A let it go.
      assert.deepEqual(b!.broker.inspect.session('roamer')?.subscriptions.map((s) => [s.topicFilter, s.qos]), [['cmd/#', 2]]);
      const pubA = await a!.mqtt('publisher-a');
      await pubA.publishAsync('cmd/y', 'after', { qos: 1 });
      await eventually(() => got.length === 7, 3000, 'a message published on A after the move');
      assert.equal(got[6]!.payload.toString(), 'after');
      await eventually(() => !a!.broker.inspect.hasSession('roamer'), GRACE_MS + 2000, 'A to let the session go');
      await pubA.publishAsync('cmd/y', 'later', { qos: 1 });
      await eventually(() => got.length === 8, 3000, 'a message published on A once A let it go');
      assert.deepEqual(got.slice(6).map((p) => p.payload.toString()), ['after', 'later'], 'each once');
    });
  }

  it('messages in flight on node A (sent, not acknowledged) are sent again with DUP on node B [MQTT-4.4.0-1]', async (t) => {
    const [a, b] = await startNodes(t, redis, ['a', 'b']);
    const connect = { clientId: 'slow', clean: false, protocolVersion: 4 as const, keepAlive: 0 };
    const { client: onA } = await RawClient.connect(a!.port, connect);
    t.after(() => onA.socket.destroy());
    onA.send({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [{ topicFilter: 'job/#', qos: 1 }] } as never);
    await onA.next(PacketType.SUBACK);
    const pub = await a!.mqtt('job-publisher');
    await pub.publishAsync('job/1', 'first', { qos: 1 });
    await pub.publishAsync('job/2', 'second', { qos: 1 });
    const sent = [(await onA.next(PacketType.PUBLISH)) as PublishPacket, (await onA.next(PacketType.PUBLISH)) as PublishPacket];
    assert.deepEqual(sent.map((p) => p.dup), [false, false]);
    // Not acknowledged; the client comes back through B (the old connection is taken over).
    const { client: onB, connack } = await RawClient.connect(b!.port, connect);
    t.after(() => onB.socket.destroy());
    assert.equal(connack.sessionPresent, true);
    const resent = [(await onB.next(PacketType.PUBLISH)) as PublishPacket, (await onB.next(PacketType.PUBLISH)) as PublishPacket];
    assert.deepEqual(resent.map((p) => [p.topic, p.payload.toString(), p.dup, p.packetId]), sent.map((p) => [p.topic, p.payload.toString(), true, p.packetId]));
    await onA.waitClosed(3000);
    for (const p of resent) onB.send({ type: PacketType.PUBACK, packetId: p.packetId! } as never);
    await eventually(() => b!.broker.inspect.session('slow')?.inflight === 0, 3000, 'acknowledged on B');
  });

  it('a client that starts clean on node B gets a new session; what A held is deleted from Redis [MQTT-3.1.2-6]', async (t) => {
    const [a, b] = await startNodes(t, redis, ['a', 'b']);
    const first = await a!.mqtt('fresh', { clean: false });
    await first.subscribeAsync('f/#', { qos: 1 });
    await first.endAsync();
    const pub = await b!.mqtt('publisher');
    await pub.publishAsync('f/1', 'old', { qos: 1 });
    await eventually(() => a!.broker.inspect.session('fresh')?.queued === 1, 3000, 'queued on A');
    const { sessionPresent, got } = await b!.session('fresh', { clean: true });
    assert.equal(sessionPresent, false);
    await pub.publishAsync('f/2', 'not subscribed', { qos: 1 });
    await eventually(() => !a!.broker.inspect.hasSession('fresh'), 3000, 'gone from A');
    assert.equal(got.length, 0);
    assert.equal(await redisCommand(redis.port, 'EXISTS', `${a!.prefix}:session:{fresh}`), ':0\r\n');
  });

  it('node A SIGKILLed while holding an offline session: node B takes the session over, queues what is published after the death, and the client resumes there with everything', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'petrel-resume-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const prefix = `kill${process.pid}r`;
    const cluster = { prefix, heartbeatTimeout: 1, heartbeatInterval: 100 };
    const config = join(dir, 'petrel.config.json');
    writeFileSync(config, JSON.stringify({ cluster: { redis: 'redis://unused:1', ...cluster } }));
    const a = await startChildBroker(dir, ['--cluster', redis.url, '--node-name', 'a', '-c', config, '--log-format', 'json']);
    t.after(() => a.kill());
    const b = await startNode(t, redis, 'b', cluster);
    await eventually(() => b.view().nodes.length === 2, 5000, 'B to see A');
    const { client: sub } = await RawClient.connect(a.port, { clientId: 'survivor', clean: false, keepAlive: 0 });
    sub.send({ type: PacketType.SUBSCRIBE, packetId: 1, subscriptions: [{ topicFilter: 'k/#', qos: 1 }] } as never);
    await sub.next(PacketType.SUBACK);
    sub.send({ type: PacketType.DISCONNECT } as never);
    await sub.waitClosed();
    const pub = await b.mqtt('publisher');
    for (let i = 0; i < 3; i++) await pub.publishAsync('k/x', `k${i}`, { qos: 1 });
    // A has them in the session's queue in Redis once it read them from its inbox.
    for (let i = 0; ; i++) {
      if ((await redisCommand(redis.port, 'HLEN', `${prefix}:session:{survivor}:queue`)) === ':3\r\n') break;
      assert.ok(i < 100, 'A queued the three messages in Redis');
      await delay(50);
    }
    await a.kill('SIGKILL');
    await eventually(() => b.view().nodes.length === 1, 5000, 'A seen down');
    // The survivor serves the dead node's offline session: a message published now is queued for it.
    await eventually(() => b.broker.inspect.hasSession('survivor'), 5000, 'B to take over the session of dead A');
    assert.equal(await redisCommand(redis.port, 'GET', `${prefix}:client:survivor`), `$3\r\nb 2\r\n`, 'the owner record moved to B, next epoch');
    await pub.publishAsync('k/x', 'after the death', { qos: 1 });
    await eventually(() => b.broker.inspect.session('survivor')?.queued === 4, 3000, 'queued on B');
    const { sessionPresent, got } = await b.session('survivor', { clean: false });
    assert.equal(sessionPresent, true);
    await eventually(() => got.length === 4, 3000, 'the queued messages on B');
    assert.deepEqual(got.map((p) => p.payload.toString()), ['k0', 'k1', 'k2', 'after the death']);
  });

  it('a node restarted under its name serves the offline sessions it held again (their messages are queued meanwhile)', async (t) => {
    const prefix = `restart${process.pid}`;
    const a1 = await startNode(t, redis, 'a', { prefix });
    const first = await a1.mqtt('sleeper', { clean: false });
    await first.subscribeAsync('s/#', { qos: 1 });
    await first.endAsync();
    await eventually(() => a1.broker.inspect.hasSession('sleeper') && !a1.broker.inspect.isConnected('sleeper'), 3000, 'offline on A');
    await a1.broker.close();
    const a2 = await startNode(t, redis, 'a', { prefix });
    assert.equal(a2.broker.inspect.hasSession('sleeper'), true, 'read back from Redis');
    const pub = await a2.mqtt('publisher');
    await pub.publishAsync('s/1', 'while away', { qos: 1 });
    const { got } = await a2.session('sleeper', { clean: false });
    await eventually(() => got.length === 1, 3000, 'the message queued after the restart');
    assert.equal(got[0]!.payload.toString(), 'while away');
  });

  it('mosquitto_sub -c on node A, then on node B: QoS 1 messages published while it was away arrive once', { skip: hasMosquittoClients ? false : 'mosquitto-clients not installed' }, async (t) => {
    const [a, b] = await startNodes(t, redis, ['a', 'b']);
    const args = (port: number) => ['-h', '127.0.0.1', '-p', String(port), '-V', 'mqttv311', '-c', '-i', 'mosq-roamer', '-q', '1', '-t', 'mr/#'];
    await run('mosquitto_sub', [...args(a!.port), '-E'], { timeout: 5000 });
    await eventually(() => a!.broker.inspect.hasSession('mosq-roamer') && !a!.broker.inspect.isConnected('mosq-roamer'), 3000, 'the session offline on A');
    for (const m of ['one', 'two']) await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b!.port), '-q', '1', '-t', 'mr/x', '-m', m], { timeout: 5000 });
    await eventually(() => a!.broker.inspect.session('mosq-roamer')?.queued === 2, 3000, 'queued on A');
    const { stdout } = await run('mosquitto_sub', [...args(b!.port), '-C', '2', '-W', '5', '-F', '%q %t %p'], { timeout: 8000 });
    assert.deepEqual(stdout.trim().split('\n'), ['1 mr/x one', '1 mr/x two']);
  });
});
