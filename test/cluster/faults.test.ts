// The cluster plane when things fail: Redis restarted mid-stream (local traffic goes on, nothing acknowledged
// is lost, remote traffic resumes), Redis away beyond the buffer (QoS 1 refused with a reason code, never
// acknowledged and dropped), and a node killed with SIGKILL (seen down within the heartbeat timeout).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import type { IPublishPacket, MqttClient } from 'mqtt';
import { noRedis, redisCommand, RedisServer } from '../helpers/redis.js';
import { freePort } from '../helpers/servers.js';
import { describeOrSkip } from '../helpers/skip.js';
import { delay, eventually, within } from '../helpers/wait.js';
import { startNode, startNodes } from './nodes.js';

function inbox(client: MqttClient): IPublishPacket[] {
  const got: IPublishPacket[] = [];
  client.on('message', (_topic, _payload, packet) => got.push(packet));
  return got;
}

describeOrSkip('cluster plane: Redis restarted mid-stream', noRedis, () => {
  let redis: RedisServer;
  before(async () => {
    // AOF, fsync always: what Redis acknowledged survives its restart, as in a production setup.
    redis = await RedisServer.start({ persistent: true });
  });
  after(async () => {
    await redis.close();
  });

  it('local traffic keeps flowing, every acknowledged QoS 1 message arrives, remote traffic resumes', async (t) => {
    const [a, b] = await startNodes(t, redis, ['a', 'b'], { heartbeatTimeout: 2 });
    const sub = await a!.mqtt('sub', { protocolVersion: 5 });
    const remote = inbox(sub);
    await sub.subscribeAsync('r/#', { qos: 1 });
    const localSub = await a!.mqtt('local-sub');
    const local = inbox(localSub);
    await localSub.subscribeAsync('l/#', { qos: 1 });
    const bLocalSub = await b!.mqtt('b-local-sub');
    const bLocal = inbox(bLocalSub);
    await bLocalSub.subscribeAsync('bl/#', { qos: 1 });
    await eventually(() => b!.view().remoteRoutes === 2, 3000, 'the routes of A on B');

    const pub = await b!.mqtt('pub', { protocolVersion: 5 });
    const acked: number[] = [];
    let stop = false;
    const loop = (async () => {
      for (let i = 0; !stop; i++) {
        await pub.publishAsync(`r/${i}`, String(i), { qos: 1 });
        acked.push(i);
        await delay(2);
      }
    })();
    await eventually(() => acked.length >= 50, 5000, '50 messages acknowledged');
    await redis.stop();
    await delay(300);
    // Redis is away: a publish between clients of one node goes on.
    const localPub = await a!.mqtt('local-pub');
    await within(localPub.publishAsync('l/x', 'during the outage', { qos: 1 }), 3000, 'the PUBACK of a publish between clients of A');
    await eventually(() => local.length === 1, 2000, 'local delivery without Redis');
    // ... also on B, whose messages for A wait for Redis meanwhile: they do not hold up a PUBACK between its own clients.
    const bLocalPub = await b!.mqtt('b-local-pub');
    await within(bLocalPub.publishAsync('bl/x', 'during the outage', { qos: 1 }), 3000, 'the PUBACK of a publish between clients of B');
    await eventually(() => bLocal.length === 1, 2000, 'local delivery on B without Redis');
    const ackedBefore = acked.length;
    await redis.restart();
    await eventually(() => acked.length >= ackedBefore + 50, 10_000, 'remote traffic to resume');
    stop = true;
    await loop;
    await eventually(() => a!.view().connected && b!.view().connected && a!.view().nodes.length === 2, 5000, 'both nodes back in the cluster');
    const received = () => new Set(remote.map((p) => Number(p.payload.toString())));
    await eventually(() => acked.every((i) => received().has(i)), 5000, 'every acknowledged message received').catch(() => {});
    const have = received();
    const missing = acked.filter((i) => !have.has(i));
    assert.deepEqual(missing, [], 'no acknowledged QoS 1 message lost');
  });
});

describeOrSkip('cluster plane: Redis away longer than the buffer', noRedis, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start({ persistent: true });
  });
  after(async () => {
    await redis.close();
  });

  it('QoS 1 beyond the buffer is refused: 5.0 PUBACK 0x97, 3.1.1 connection closed; the buffered ones arrive later', async (t) => {
    const [a, b] = await startNodes(t, redis, ['a', 'b'], { heartbeatTimeout: 5, maxBuffered: 5 });
    const sub = await a!.mqtt('sub');
    const got = inbox(sub);
    await sub.subscribeAsync('f/#', { qos: 1 });
    await eventually(() => b!.view().remoteRoutes === 1, 3000, 'the route of A on B');
    await redis.stop();
    const pub5 = await b!.mqtt('pub5', { protocolVersion: 5 });
    const outcomes: (string | number)[] = [];
    const pending = Array.from({ length: 8 }, (_, i) =>
      pub5.publishAsync(`f/${i}`, String(i), { qos: 1 }).then(
        () => outcomes.push(i),
        (err: { code?: number }) => outcomes.push(`refused:${err.code}`),
      ),
    );
    await eventually(() => outcomes.length === 3, 3000, 'three refusals');
    assert.deepEqual(outcomes, ['refused:151', 'refused:151', 'refused:151'], '0x97 Quota exceeded beyond 5 buffered');
    const pub4 = await b!.mqtt('pub4', { protocolVersion: 4 });
    const closed = new Promise<void>((resolve) => pub4.once('close', () => resolve()));
    pub4.publish('f/x', 'x', { qos: 1 });
    await closed; // 3.1.1 has no negative PUBACK [MQTT-3.3.4-1]: the connection is closed, the client sends it again later
    await redis.restart();
    await Promise.all(pending);
    assert.deepEqual(outcomes.slice(3), [0, 1, 2, 3, 4]);
    await eventually(() => got.length === 5, 5000, 'the five buffered messages delivered');
    assert.deepEqual(got.map((p) => p.payload.toString()), ['0', '1', '2', '3', '4']);
  });
});

describeOrSkip('cluster plane: a node killed', noRedis, () => {
  let redis: RedisServer;
  const dir = mkdtempSync(join(tmpdir(), 'petrel-cluster-cli-'));
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('`petrel broker --cluster URL --node-name c` joins (its start-up log says so); SIGKILLed, it is seen down within heartbeatTimeout', async (t) => {
    const prefix = `kill${process.pid}`;
    const timeout = 1;
    const a = await startNode(t, redis, 'a', { prefix, heartbeatTimeout: timeout });
    const config = join(dir, 'petrel.config.json');
    writeFileSync(config, JSON.stringify({ cluster: { redis: 'redis://unused:1', prefix, heartbeatTimeout: timeout, heartbeatInterval: 100 } }));
    const bin = join(import.meta.dirname, '../../../bin/petrel.js');
    const child = spawn(process.execPath, [bin, 'broker', '--cluster', redis.url, '--node-name', 'c', '-c', config, '--port', '0', '--host', '127.0.0.1', '--storage', 'memory', '--log-format', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => child.kill('SIGKILL'));
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    await eventually(() => out.includes('"cluster \\"'), 10_000, `the start-up log line (${out})`);
    const line = JSON.parse(out.split('\n').find((l) => l.includes('"cluster \\"'))!) as { msg: string; node: string; nodes: number };
    assert.equal(line.node, 'c');
    assert.equal(line.nodes, 2);
    assert.match(line.msg, new RegExp(`^cluster "${prefix}" on redis://127.0.0.1:\\d+: node c, 2 nodes seen$`));
    await eventually(() => a.view().nodes.length === 2, 3000, 'A to see C');
    const downs: [string, number][] = [];
    a.broker.clusterMembership!.on('node-down', (name) => downs.push([name, Date.now()]));
    const killedAt = Date.now();
    child.kill('SIGKILL');
    await eventually(() => downs.length > 0, 5000, 'node-down');
    const detectedIn = downs[0]![1] - killedAt;
    assert.equal(downs[0]![0], 'c');
    assert.ok(detectedIn <= timeout * 1000 + 50, `detected in ${detectedIn} ms (timeout ${timeout * 1000} ms)`);
    assert.deepEqual(a.view().nodes.map((n) => n.name), ['a']);
    await delay(300);
    assert.equal(downs.length, 1, 'reported once');
  });
});

describeOrSkip('cluster plane: --workers', noRedis, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.close();
  });

  it('`petrel broker --cluster URL --workers 2` runs two nodes sharing one port; messages cross between them', async (t) => {
    const port = await freePort();
    const bin = join(import.meta.dirname, '../../../bin/petrel.js');
    // A process group of its own, so that a failed test kills the workers too, not only the primary.
    const child = spawn(process.execPath, [bin, 'broker', '--cluster', redis.url, '--node-name', 'm', '--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--storage', 'memory', '--log-format', 'json'], { stdio: ['ignore', 'pipe', 'ignore'], detached: true });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    t.after(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    });
    const nodes = async () => (await redisCommand(redis.port, 'HKEYS', 'petrel:nodes')).split('\r\n').filter((l) => l.startsWith('m-'));
    for (let i = 0; (await nodes()).length < 2; i++) {
      if (i > 200) assert.fail('two workers did not join');
      await delay(50);
    }
    assert.deepEqual((await nodes()).sort(), ['m-w1', 'm-w2']);
    // A worker joins the cluster before its listener opens (it reads its sessions back from Redis first).
    await eventually(() => out.split('"msg":"listening"').length - 1 === 2, 10_000, 'both workers listening');
    const mqtt = (await import('mqtt')).default;
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'sub', reconnectPeriod: 0 });
    const got = inbox(sub);
    await sub.subscribeAsync('w/#', { qos: 1 });
    await delay(300); // the route reaches the other worker
    // Connections go round robin over the workers: among four publishers, some are on the other node.
    for (let i = 0; i < 4; i++) {
      const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: `pub${i}`, reconnectPeriod: 0 });
      await pub.publishAsync(`w/${i}`, String(i), { qos: 1 });
      await pub.endAsync();
    }
    await eventually(() => got.length === 4, 5000, 'four messages');
    await sub.endAsync();
    const xadds = /cmdstat_xadd:calls=(\d+)/.exec(await redisCommand(redis.port, 'INFO', 'commandstats'))?.[1];
    assert.ok(Number(xadds) >= 1, 'some went through Redis from one worker to the other');
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    assert.deepEqual(await nodes(), [], 'both workers left the cluster on SIGTERM');
  });
});

describeOrSkip('cluster plane: Redis not there at start', noRedis, () => {
  it('a node started without Redis serves its own clients, and joins the cluster once Redis is up', async (t) => {
    const redis = await RedisServer.start();
    t.after(() => redis.close());
    await redis.stop();
    const a = await startNode(t, redis, 'a', { prefix: `late${process.pid}` }, {});
    assert.equal(a.view().connected, false);
    const sub = await a.mqtt('sub');
    const got = inbox(sub);
    await sub.subscribeAsync('z/#', { qos: 1 });
    const pub = await a.mqtt('pub');
    await pub.publishAsync('z/1', 'local', { qos: 1 });
    await eventually(() => got.length === 1, 2000, 'local delivery');
    await redis.restart();
    const b = await startNode(t, redis, 'b', { prefix: `late${process.pid}` });
    await eventually(() => a.view().connected && b.view().remoteRoutes === 1, 5000, "A joined and B learnt A's route");
    const pubB = await b.mqtt('pubB');
    await pubB.publishAsync('z/2', 'remote', { qos: 1 });
    await eventually(() => got.length === 2, 3000, 'remote delivery');
  });
});

describeOrSkip('cluster plane: a node taken for dead', noRedis, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.close();
  });

  it('a node whose entries the others removed announces its routes again, and messages reach it again', async (t) => {
    const prefix = `dead${process.pid}`;
    const [a, b] = await startNodes(t, redis, ['a', 'b'], { prefix, heartbeatTimeout: 1 });
    const sub = await b!.mqtt('sub');
    const got = inbox(sub);
    await sub.subscribeAsync('d/#', { qos: 1 });
    await eventually(() => a!.view().remoteRoutes === 1, 3000, 'the route of B on A');
    // What the survivors do to a node they take for dead (membership.ts): its list entry and routes go.
    await redisCommand(redis.port, 'HDEL', `${prefix}:nodes`, 'b');
    await redisCommand(redis.port, 'DEL', `${prefix}:routes:b`);
    const routesOfB = async () => (await redisCommand(redis.port, 'SMEMBERS', `${prefix}:routes:b`)).includes('d/#');
    // A deadline, not a count of polls: each poll is a Redis round trip, slow on a busy machine.
    for (const deadline = Date.now() + 5000; !(await routesOfB()); ) {
      if (Date.now() > deadline) assert.fail('B did not announce its routes again');
      await delay(20);
    }
    await eventually(() => a!.view().remoteRoutes === 1 && a!.view().nodes.length === 2, 3000, 'A knows B and its route');
    const pub = await a!.mqtt('pub');
    await pub.publishAsync('d/1', 'again', { qos: 1 });
    await eventually(() => got.length === 1, 3000, 'delivery to B');
    // A survivor that adopted B's sessions while B was taken for dead says so only now: B is alive and its
    // routes are fresh, so they stay (only a marker goes into B's inbox).
    await redisCommand(redis.port, 'PUBLISH', `${prefix}:events`, '~b\nc');
    await delay(200);
    assert.equal(a!.view().remoteRoutes, 1, 'the routes of a live node stay');
    await pub.publishAsync('d/1', 'still', { qos: 1 });
    await eventually(() => got.length === 2, 3000, 'delivery to B after the switch');
  });

  it('a node\'s routes missing from Redis (it restarted empty, the node has not announced again yet) stay known to the others: messages still reach it', async (t) => {
    const prefix = `lost${process.pid}`;
    const [a, b] = await startNodes(t, redis, ['a', 'b'], { prefix, heartbeatTimeout: 1 });
    // An announced set exists even when the node has no route: a missing one means "not announced", not "none".
    assert.equal(await redisCommand(redis.port, 'SMEMBERS', `${prefix}:routes:a`), '*1\r\n$0\r\n\r\n', 'A announced, with no route: one empty member');
    const sub = await b!.mqtt('sub');
    const got = inbox(sub);
    await sub.subscribeAsync('lost/#', { qos: 1 });
    await eventually(() => a!.view().remoteRoutes === 1, 3000, 'the route of B on A');
    // What A sees after a Redis restart before B announced again: no set, and a reason to read it (a `*` event).
    await redisCommand(redis.port, 'DEL', `${prefix}:routes:b`);
    await redisCommand(redis.port, 'PUBLISH', `${prefix}:events`, '*b');
    await delay(200);
    assert.equal(a!.view().remoteRoutes, 1, 'B\'s route kept');
    const pub = await a!.mqtt('pub');
    await pub.publishAsync('lost/1', 'across', { qos: 1 });
    await eventually(() => got.length === 1, 3000, 'delivery to B');
    // Removing a route is still heard: the set being missing keeps nothing the node took back.
    await sub.unsubscribeAsync('lost/#');
    await eventually(() => a!.view().remoteRoutes === 0, 3000, 'the route of B gone from A');
  });
  it('a route event outweighs a read of the node\'s routes made just after it (the set may not hold the change yet: on a Redis Cluster they are on different masters)', async (t) => {
    const prefix = `recent${process.pid}`;
    const [a, b] = await startNodes(t, redis, ['a', 'b'], { prefix, heartbeatTimeout: 1 });
    const sub = await b!.mqtt('sub');
    await sub.subscribeAsync('ev/#', { qos: 1 });
    await eventually(() => a!.view().remoteRoutes === 1, 3000, 'the route of B on A');
    // Events whose change the set does not show yet, each followed at once by a reason to read the set.
    await redisCommand(redis.port, 'PUBLISH', `${prefix}:events`, '+b\nev2/#');
    await redisCommand(redis.port, 'PUBLISH', `${prefix}:events`, '*b');
    await delay(200);
    assert.equal(a!.view().remoteRoutes, 2, 'the route added by the event stays');
    await redisCommand(redis.port, 'PUBLISH', `${prefix}:events`, '-b\nev/#');
    await redisCommand(redis.port, 'PUBLISH', `${prefix}:events`, '*b');
    await delay(200);
    assert.equal(a!.view().remoteRoutes, 1, 'the route removed by the event stays removed');
    // Past the second, the set is what counts: B's real route is back on A, and messages reach B again.
    await delay(1000);
    await redisCommand(redis.port, 'PUBLISH', `${prefix}:events`, '*b');
    await delay(200);
    const got = inbox(sub);
    const pub = await a!.mqtt('pub');
    await pub.publishAsync('ev/1', 'x', { qos: 1 });
    await eventually(() => got.length === 1, 3000, 'delivery to B: its route read again from the set');
    assert.equal(a!.view().remoteRoutes, 1);
  });
});

describeOrSkip('cluster plane: the publishing node killed', noRedis, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start({ persistent: true });
  });
  after(async () => {
    await redis.close();
  });

  it('a node SIGKILLed mid-stream (Redis away just before) loses no QoS 1 message whose PUBACK reached its publisher', async (t) => {
    // The CLI node uses the default prefix; this Redis is this test's alone.
    const a = await startNode(t, redis, 'a', { prefix: 'petrel' });
    const sub = await a.mqtt('sub');
    const got = inbox(sub);
    await sub.subscribeAsync('k/#', { qos: 1 });
    const port = await freePort();
    const bin = join(import.meta.dirname, '../../../bin/petrel.js');
    const child = spawn(process.execPath, [bin, 'broker', '--cluster', redis.url, '--node-name', 'p', '--port', String(port), '--host', '127.0.0.1', '--storage', 'memory', '--log-level', 'warn'], { stdio: 'ignore' });
    t.after(() => child.kill('SIGKILL'));
    await eventually(() => a.view().nodes.length === 2, 10_000, 'the child node to join');
    await delay(300); // it reads A's route
    const mqtt = (await import('mqtt')).default;
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'pub', reconnectPeriod: 0 });
    pub.on('error', () => {});
    let gone = false;
    const closed = new Promise<void>((resolve) => pub.once('close', () => ((gone = true), resolve())));
    const acked: number[] = [];
    let i = 0;
    const window = new Set<Promise<unknown>>();
    const killed = (async () => {
      await eventually(() => acked.length >= 200, 10_000, '200 acknowledged');
      // Redis away, then the node killed: a message acknowledged meanwhile would be one Redis never had.
      await redis.stop();
      await delay(300);
      child.kill('SIGKILL');
      await redis.restart();
    })();
    // 20 in flight at a time, so some are unacknowledged when the node dies.
    while (!gone && i < 100_000) {
      const n = i++;
      const p = pub.publishAsync(`k/${n}`, String(n), { qos: 1 }).then(
        () => acked.push(n),
        () => {},
      );
      window.add(p);
      void p.finally(() => window.delete(p));
      if (window.size >= 20) await Promise.race([...window, closed]);
    }
    await killed;
    await eventually(() => acked.every((n) => got.some((p) => p.payload.toString() === String(n))), 5000, 'every acknowledged message at A').catch(() => {});
    const have = new Set(got.map((p) => Number(p.payload.toString())));
    assert.deepEqual(acked.filter((n) => !have.has(n)), [], 'acknowledged and lost');
    assert.ok(acked.length >= 200);
    await pub.endAsync(true).catch(() => {});
  });
});
