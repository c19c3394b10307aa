// The tests the cluster passes on each high-availability form of Redis (docs/cluster.md, "Redis high
// availability"), run by redis-ha-sentinel.test.ts and redis-ha-cluster.test.ts (one file each, so each stays
// well inside the runner's per-file timeout): two Petrel nodes with MQTT.js clients, QoS 1 across nodes, Client
// ID takeover, a session resumed on the other node, retained messages, a clean leave, a SIGKILLed node. (The
// same features on a single redis-server: plane.test.ts, whole-node.test.ts, resume.test.ts.)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { GRACE_MS } from '../../src/cluster/handover.js';
import type { ClusterRedis } from '../../src/cluster/options.js';
import { delay, eventually } from '../helpers/wait.js';
import { inbox, startNodes, type RedisAt } from './nodes.js';

/** `petrel broker -c config` as a child process (so it can be SIGKILLed) with `cluster` in its config file; resolves once it joined. */
export async function childNode(t: { after: (fn: () => unknown) => void }, redis: ClusterRedis, cluster: Record<string, unknown>) {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-ha-node-'));
  const config = join(dir, 'petrel.config.json');
  writeFileSync(config, JSON.stringify({ cluster: { redis, heartbeatInterval: 100, ...cluster } }));
  const bin = join(import.meta.dirname, '../../../bin/petrel.js');
  const child = spawn(process.execPath, [bin, 'broker', '-c', config, '--port', '0', '--host', '127.0.0.1', '--storage', 'memory', '--log-format', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  await eventually(() => out.includes('"cluster \\"') && /"port":\d+/.test(out), 15_000, `the start-up log lines (${out})`);
  const joined = JSON.parse(out.split('\n').find((l) => l.includes('"cluster \\"'))!) as { msg: string; nodes: number };
  const port = Number(/"port":(\d+)/.exec(out)![1]);
  return { child, joined, port, log: () => out };
}

/** The tests both forms pass: `at()` is where the Redis is (started by the suite's before()). */
export function sameAsOneServer(at: () => RedisAt & { keyExists(key: string): Promise<boolean> }): void {
  it('QoS 1 messages published on node B reach a subscriber on node A, in order, and back', async (t) => {
    const [a, b] = await startNodes(t, at(), ['a', 'b']);
    const subA = await a!.mqtt('sub-a', { protocolVersion: 5 });
    const subB = await b!.mqtt('sub-b', { protocolVersion: 4 });
    const [gotA, gotB] = [inbox(subA), inbox(subB)];
    await subA.subscribeAsync('ha/to-a/#', { qos: 1 });
    await subB.subscribeAsync('ha/to-b/#', { qos: 1 });
    await eventually(() => a!.view().remoteRoutes === 1 && b!.view().remoteRoutes === 1, 5000, 'each node to learn the other route');
    const pubB = await b!.mqtt('pub-b', { protocolVersion: 5 });
    const pubA = await a!.mqtt('pub-a', { protocolVersion: 4 });
    for (let i = 0; i < 20; i++) await pubB.publishAsync(`ha/to-a/${i % 3}`, `m${i}`, { qos: 1 });
    for (let i = 0; i < 20; i++) await pubA.publishAsync(`ha/to-b/${i % 3}`, `m${i}`, { qos: 1 });
    const expected = Array.from({ length: 20 }, (_, i) => `m${i}`);
    await eventually(() => gotA.length >= 20 && gotB.length >= 20, 5000, 'twenty messages each way');
    assert.deepEqual(
      gotA.map((p) => p.payload.toString()),
      expected,
      'B → A: all, once, in order',
    );
    assert.deepEqual(
      gotB.map((p) => p.payload.toString()),
      expected,
      'A → B: all, once, in order',
    );
    assert.ok(gotA.every((p) => p.qos === 1) && gotB.every((p) => p.qos === 1));
    assert.equal(b!.view().forwarded.sent, 20);
    assert.equal(a!.view().forwarded.received, 20);
  });

  it('a Client ID connected on node A is taken over by a CONNECT on node B: DISCONNECT 0x8E on A [MQTT-3.1.4-3]', async (t) => {
    const [a, b] = await startNodes(t, at(), ['a', 'b']);
    const first = await a!.mqtt('same-id', { protocolVersion: 5 });
    const disconnected = new Promise<number | undefined>((resolve) => first.once('disconnect', (packet) => resolve(packet.reasonCode)));
    const second = await b!.mqtt('same-id', { protocolVersion: 5 });
    assert.equal(await disconnected, 0x8e, 'Session taken over');
    await eventually(() => a!.broker.inspect.counts().connections === 0, 3000, 'the old connection gone from A');
    assert.equal(second.connected, true);
    assert.equal(b!.broker.inspect.counts().connections, 1);
  });

  it('a persistent session made on node A resumes on node B with the QoS 1 messages queued while its client was away [MQTT-3.1.2-4]', async (t) => {
    const [a, b] = await startNodes(t, at(), ['a', 'b']);
    const persistent = { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 600 } };
    const first = await a!.mqtt('ha-roamer', persistent);
    await first.subscribeAsync('ha/q/#', { qos: 1 });
    await first.endAsync();
    await eventually(() => a!.broker.inspect.hasSession('ha-roamer') && !a!.broker.inspect.isConnected('ha-roamer'), 3000, 'offline on A');
    const pub = await b!.mqtt('ha-publisher');
    for (let i = 0; i < 3; i++) await pub.publishAsync('ha/q/x', `q${i}`, { qos: 1 });
    await eventually(() => a!.broker.inspect.session('ha-roamer')?.queued === 3, 5000, 'queued on A');
    const { sessionPresent, got } = await b!.session('ha-roamer', persistent);
    assert.equal(sessionPresent, true);
    await eventually(() => got.length === 3, 5000, 'the queued messages on B');
    assert.deepEqual(got.map((p) => p.payload.toString()), ['q0', 'q1', 'q2']);
    await eventually(() => !a!.broker.inspect.hasSession('ha-roamer'), GRACE_MS + 3000, 'A to let the session go after the hand-over');
  });

  it('a retained message published on node A is delivered to a new subscriber on node B; an empty one clears it on both', async (t) => {
    const [a, b] = await startNodes(t, at(), ['a', 'b']);
    const pub = await a!.mqtt('pub');
    await pub.publishAsync('ha/r/1', 'kept', { qos: 1, retain: true });
    await eventually(() => b!.broker.inspect.retained('ha/r/1')?.payload.toString() === 'kept', 3000, 'the retained message on B');
    const sub = await b!.mqtt('sub', { protocolVersion: 5 });
    const got = inbox(sub);
    await sub.subscribeAsync('ha/r/#', { qos: 1 });
    await eventually(() => got.length === 1, 3000, 'the retained message delivered on B');
    assert.equal(got[0]!.retain, true, '[MQTT-3.3.1-8]');
    assert.equal(got[0]!.payload.toString(), 'kept');
    await pub.publishAsync('ha/r/1', '', { qos: 1, retain: true });
    await eventually(() => b!.broker.inspect.retained('ha/r/1') === undefined && a!.broker.inspect.retained('ha/r/1') === undefined, 3000, 'cleared on both nodes');
  });

  it('a node stopped normally leaves (no node-down on the others): its client\'s will is published once, by itself', async (t) => {
    const [a, b] = await startNodes(t, at(), ['a', 'b']);
    const downs: string[] = [];
    a!.broker.clusterMembership!.on('node-down', (name) => downs.push(name));
    const sub = await a!.mqtt('watcher', { protocolVersion: 5 });
    const got = inbox(sub);
    await sub.subscribeAsync('ha/will/#', { qos: 1 });
    await eventually(() => b!.view().remoteRoutes === 1, 5000, 'the route of A on B');
    await b!.mqtt('mortal', { protocolVersion: 5, will: { topic: 'ha/will/mortal', payload: Buffer.from('gone'), qos: 1, retain: false } });
    await b!.broker.close();
    await eventually(() => a!.view().nodes.length === 1, 5000, 'B gone from A\'s view');
    await eventually(() => got.length === 1, 5000, 'the will, published by B as it stopped');
    await delay(1500); // over one heartbeatTimeout: a leave taken for a death would show now
    assert.deepEqual(downs, [], 'B left: it did not die');
    assert.deepEqual(
      got.map((p) => p.payload.toString()),
      ['gone'],
      'the will once',
    );
  });

  it('a node SIGKILLed is seen down within heartbeatTimeout and a survivor publishes its client\'s will, once', async (t) => {
    const prefix = `kill${process.pid}x${Math.random().toString(36).slice(2, 8)}`;
    const [a] = await startNodes(t, at(), ['a'], { prefix, heartbeatTimeout: 1 });
    const c = await childNode(t, at().config!, { prefix, nodeName: 'c', heartbeatTimeout: 1 });
    assert.equal(c.joined.nodes, 2, c.joined.msg);
    await eventually(() => a!.view().nodes.length === 2, 5000, 'A to see C');
    const downs: string[] = [];
    a!.broker.clusterMembership!.on('node-down', (name) => downs.push(name));
    const sub = await a!.mqtt('watcher', { protocolVersion: 5 });
    const got = inbox(sub);
    await sub.subscribeAsync('ha/will/#', { qos: 1 });
    const mqtt = (await import('mqtt')).default;
    const mortal = await mqtt.connectAsync(`mqtt://127.0.0.1:${c.port}`, { clientId: 'mortal', protocolVersion: 5, reconnectPeriod: 0, will: { topic: 'ha/will/mortal', payload: Buffer.from('died'), qos: 1, retain: false } });
    mortal.on('error', () => {});
    t.after(() => mortal.end(true));
    // C has a route and an inbox in Redis: a dead node's entries are removed by the survivors.
    await mortal.subscribeAsync('ha/to-c', { qos: 1 });
    const mortalGot = inbox(mortal);
    await eventually(() => a!.view().remoteRoutes === 1, 5000, 'the route of C on A');
    const pub = await a!.mqtt('pub');
    await pub.publishAsync('ha/to-c', 'hello c', { qos: 1 });
    await eventually(() => mortalGot.length === 1, 5000, 'a message from A to C');
    assert.ok((await at().keyExists(`${prefix}:inbox:c`)) && (await at().keyExists(`${prefix}:routes:c`)), 'C\'s inbox and routes in Redis');
    await delay(300); // the will recorded in Redis
    c.child.kill('SIGKILL');
    await eventually(() => downs.length > 0, 5000, 'node-down of C');
    assert.deepEqual(downs, ['c']);
    await eventually(() => got.length === 1, 5000, 'the will of C\'s client, from A');
    assert.equal(got[0]!.payload.toString(), 'died');
    await delay(500);
    assert.equal(got.length, 1, 'published once');
    // C's inbox outlives it (a TTL) until the survivor that adopts its sessions has replayed it, then goes.
    for (let i = 0; await at().keyExists(`${prefix}:inbox:c`); i++) {
      assert.ok(i < 100, 'C\'s inbox removed by the adopter');
      await delay(50);
    }
    assert.equal(await at().keyExists(`${prefix}:routes:c`), false, 'C\'s routes removed');
    assert.equal(await at().keyExists(`${prefix}:node:c`), false);
  });

  it('a node stopped, then SIGKILLed: the QoS 1 messages acknowledged for its persistent session meanwhile reach the session on the survivor, in order', async (t) => {
    const prefix = `replay${process.pid}x${Math.random().toString(36).slice(2, 8)}`;
    const [a] = await startNodes(t, at(), ['a'], { prefix, heartbeatTimeout: 2 });
    const c = await childNode(t, at().config!, { prefix, nodeName: 'c', heartbeatTimeout: 2 });
    await eventually(() => a!.view().nodes.length === 2, 5000, 'A to see C');
    const mqtt = (await import('mqtt')).default;
    const persistent = { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 600 } };
    const first = await mqtt.connectAsync(`mqtt://127.0.0.1:${c.port}`, { clientId: 'ha-sleeper', reconnectPeriod: 0, ...persistent });
    await first.subscribeAsync('ha/kept/#', { qos: 1 });
    await first.endAsync();
    await eventually(() => a!.view().remoteRoutes === 1, 5000, 'the route of C on A');
    // C stops reading its inbox (SIGSTOP); what A forwards to it meanwhile is acknowledged and waits there.
    c.child.kill('SIGSTOP');
    const pub = await a!.mqtt('pub');
    for (let i = 0; i < 5; i++) await pub.publishAsync('ha/kept/x', `k${i}`, { qos: 1 });
    assert.equal(a!.view().nodes.length, 2, 'published before C was seen down');
    c.child.kill('SIGKILL');
    await eventually(() => a!.broker.inspect.session('ha-sleeper')?.queued === 5, 8000, 'the session adopted by A with the five messages replayed');
    const { sessionPresent, got } = await a!.session('ha-sleeper', persistent);
    assert.equal(sessionPresent, true);
    await eventually(() => got.length === 5, 5000, 'the five messages on A');
    assert.deepEqual(
      got.map((p) => p.payload.toString()),
      ['k0', 'k1', 'k2', 'k3', 'k4'],
    );
  });
}
