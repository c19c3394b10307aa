// The `cluster` option where users give it (createBroker, the config file, the CLI flags): one-line errors
// naming the field; and what a node tells operators ($SYS/broker/cluster/..., broker.inspect.cluster()).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { IPublishPacket } from 'mqtt';
import { validateConfig } from '../../src/config/config.js';
import { createBroker } from '../../src/server/broker.js';
import { noRedis, RedisServer } from '../helpers/redis.js';
import { describeOrSkip } from '../helpers/skip.js';
import { eventually } from '../helpers/wait.js';
import { startNodes } from './nodes.js';
import { BrokerMetrics } from '../../src/http/metrics.js';

describe('cluster options', () => {
  it('createBroker refuses a wrong cluster option with one line naming the field', () => {
    const cases: [unknown, RegExp][] = [
      [{ redis: 'http://127.0.0.1:6379' }, /createBroker: cluster\.redis: must be a redis:\/\/ or rediss:\/\/ URL/],
      [{}, /createBroker: cluster\.redis: required/],
      [{ redis: 'redis://x', nodeName: 'a b' }, /createBroker: cluster\.nodeName: must be 1-64 characters/],
      [{ redis: 'redis://x', heartbeatTimeout: 0 }, /createBroker: cluster\.heartbeatTimeout: must be a number of seconds/],
      [{ redis: 'redis://x', maxBuffered: -1 }, /createBroker: cluster\.maxBuffered: must be a positive whole number/],
      [{ redis: 'redis://x', nodes: 3 }, /createBroker: cluster\.nodes: unknown option/],
      [{ redis: { sentinels: [] , name: 'm' } }, /createBroker: cluster\.redis\.sentinels: must be a non-empty list/],
      [{ redis: { sentinels: [{ host: 'a', port: 26379 }, { host: 'b' }], name: 'm' } }, /createBroker: cluster\.redis\.sentinels\[1\]: must be \{ host, port \}/],
      [{ redis: { sentinels: [{ host: 'a', port: 26379 }], name: 'm', sentinelPassword: 'x' } }, /createBroker: cluster\.redis\.sentinelPassword: unknown option/],
      [{ redis: { nodes: [{ host: 'a', port: 7000 }, 'a:7001', 'redis://a:7002', { host: 'a', port: 70000 }] } }, /createBroker: cluster\.redis\.nodes\[3\]: must be \{ host, port \}, "host:port" or a redis:\/\/ URL/],
      ['redis://x', /createBroker: cluster: must be an object/],
    ];
    for (const [cluster, message] of cases) assert.throws(() => createBroker({ cluster: cluster as never }), message);
  });

  it('the config file checks the cluster key the same way', () => {
    assert.throws(() => validateConfig({ cluster: { redis: 'localhost:6379' } }), /^.*cluster\.redis: must be a redis:\/\/ or rediss:\/\/ URL/);
    assert.deepEqual(validateConfig({ cluster: { redis: 'redis://127.0.0.1:6379', nodeName: 'n1' } }).cluster, { redis: 'redis://127.0.0.1:6379', nodeName: 'n1' });
  });

  it('a broker without the cluster option has no cluster view', async () => {
    const b = createBroker({ port: 0, host: '127.0.0.1' });
    assert.equal(b.inspect.cluster(), undefined);
    assert.equal(b.clusterMembership, undefined);
  });

  it('`--node-name` and `--workers` without `--cluster` are refused (exit 2)', () => {
    const bin = join(import.meta.dirname, '../../../bin/petrel.js');
    for (const [flags, message] of [
      [['--node-name', 'a'], /--node-name: needs --cluster/],
      [['--workers', '2'], /--workers: needs --cluster/],
      [['--cluster', 'redis://127.0.0.1:1', '--workers', 'two'], /--workers: must be a whole number/],
      [['--cluster', 'tcp://127.0.0.1:1'], /cluster\.redis: must be a redis:\/\/ or rediss:\/\/ URL/],
    ] as [string[], RegExp][]) {
      const r = spawnSync(process.execPath, [bin, 'broker', '--port', '0', '--storage', 'memory', ...flags], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 2, `${flags.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });
});

describeOrSkip('cluster observability', noRedis, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.close();
  });

  it('$SYS/broker/cluster/... and inspect.cluster() give the nodes, heartbeat ages and routes; $SYS stays on its node', async (t) => {
    const [a, b] = await startNodes(t, redis, ['a', 'b'], {}, { sysInterval: 1 });
    const sub = await b!.mqtt('s');
    await sub.subscribeAsync('x/+', { qos: 1 });
    await eventually(() => a!.view().remoteRoutes === 1, 3000, 'the route of B on A');
    const view = a!.view();
    assert.equal(view.node, 'a');
    assert.equal(view.connected, true);
    assert.deepEqual(view.nodes.map((n) => [n.name, n.routes]), [['a', 0], ['b', 1]]);
    assert.ok(view.nodes[1]!.heartbeatAgeMs! < 2000);
    const watcher = await a!.mqtt('sys');
    const sys = new Map<string, string>();
    const all: IPublishPacket[] = [];
    watcher.on('message', (topic, payload, p) => (sys.set(topic, payload.toString()), all.push(p)));
    await watcher.subscribeAsync('$SYS/broker/cluster/#');
    // Retained: the values of the last publication come at once, the next ones every sysInterval.
    await eventually(() => sys.get('$SYS/broker/cluster/nodes') === '2' && sys.get('$SYS/broker/cluster/nodes/b/routes') === '1', 4000, 'the cluster $SYS topics');
    assert.equal(sys.get('$SYS/broker/cluster/node'), 'a', "only A's own $SYS reaches a client of A");
    assert.equal(sys.get('$SYS/broker/cluster/redis'), 'connected');
    assert.equal(sys.get('$SYS/broker/cluster/routes/remote'), '1');
    assert.equal(sys.get('$SYS/broker/cluster/nodes/b/routes'), '1');
    assert.ok(sys.has('$SYS/broker/cluster/nodes/b/heartbeat age'));
    assert.equal(b!.view().forwarded.received, 0, "A's $SYS messages are not forwarded");
  });

  it('/metrics of a node: petrel_cluster_nodes, _routes, _connected, _heartbeat_age_seconds, _forwarded_total', async (t) => {
    const [a, b] = await startNodes(t, redis, ['a', 'b']);
    const sub = await b!.mqtt('s');
    await sub.subscribeAsync('m/+', { qos: 1 });
    await eventually(() => a!.view().remoteRoutes === 1, 3000, 'the route of B on A');
    const pub = await a!.mqtt('p');
    await pub.publishAsync('m/1', 'x', { qos: 1 });
    await eventually(() => a!.view().forwarded.sent === 1, 3000, 'the message forwarded');
    const metrics = new BrokerMetrics(a!.broker);
    t.after(() => metrics.close());
    const text = await metrics.text();
    assert.match(text, /^petrel_cluster_nodes\{state="alive"\} 2$/m);
    assert.match(text, /^petrel_cluster_nodes\{state="down"\} 0$/m);
    assert.match(text, /^petrel_cluster_routes\{owner="remote"\} 1$/m);
    assert.match(text, /^petrel_cluster_connected\{node="a"\} 1$/m);
    assert.match(text, /^petrel_cluster_heartbeat_age_seconds\{node="b"\} /m);
    assert.match(text, /^petrel_cluster_forwarded_total\{direction="sent"\} 1$/m);
  });

  it('a broker that is not a node has no cluster samples in /metrics', async (t) => {
    const broker = createBroker({ port: 0, host: '127.0.0.1' });
    const metrics = new BrokerMetrics(broker);
    t.after(() => metrics.close());
    assert.doesNotMatch(await metrics.text(), /^petrel_cluster_\w+(\{.*\})? /m);
  });
});
