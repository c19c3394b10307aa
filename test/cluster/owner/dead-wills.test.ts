// Wills of a node that dies: its heartbeat expires ('node-down'), one survivor takes its wills and publishes
// each once, after its Will Delay [MQTT-3.1.3-9 .. 3.1.2.5], unless the client connected again on another
// node first (then the will is not sent, as for a resumed session).
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { Message } from '../../../src/broker/message.js';
import { RawClient } from '../../helpers/raw-client.js';
import { describeOrSkip } from '../../helpers/skip.js';
import { delay, eventually } from '../../helpers/wait.js';
import { TestCluster, type TestNode } from './nodes.js';
import { redisMissing, startRedis, type RunningRedis } from './redis-server.js';

describeOrSkip('cluster: wills of a dead node', redisMissing(), () => {
  let redis: RunningRedis;
  let cluster: TestCluster;
  /** Will topics published, by node. */
  const published = new Map<string, string[]>();
  before(async () => {
    redis = await startRedis();
    cluster = new TestCluster(redis);
    for (const name of ['a', 'b', 'c', 'd']) {
      const node = await cluster.start(name);
      published.set(name, []);
      node.broker.on('published', (m: Message) => {
        if (m.topic.startsWith('wills/')) published.get(name)!.push(m.topic);
      });
    }
  });
  after(async () => {
    await cluster?.stop();
    await redis?.stop();
  });

  /** How many times survivors (every node but `dead`) published `topic`. */
  const count = (dead: string, topic: string) => [...published].filter(([n]) => n !== dead).reduce((sum, [, topics]) => sum + topics.filter((t) => t === topic).length, 0);
  const willsOf = (node: TestNode) => cluster.nodes[cluster.nodes.length - 1]!.redis.hlen(`${cluster.prefix}:wills:${node.name}`);

  it('a survivor publishes each will of the dead node once, after its Will Delay', async () => {
    const a = cluster.nodes[0]!;
    const { client: now } = await RawClient.connect(a.port, { clientId: 'w-now', will: { topic: 'wills/now', payload: Buffer.from('x'), qos: 1, retain: false } });
    const { client: later } = await RawClient.connect(a.port, {
      protocolVersion: 5,
      clientId: 'w-later',
      properties: { sessionExpiryInterval: 60 },
      will: { topic: 'wills/later', payload: Buffer.from('y'), qos: 0, retain: false, properties: { willDelayInterval: 1 } },
    });
    const { client: polite } = await RawClient.connect(a.port, { clientId: 'w-polite', will: { topic: 'wills/polite', payload: Buffer.from('z'), qos: 0, retain: false } });
    polite.send({ type: 14 } as never); // a normal DISCONNECT discards the will [MQTT-3.14.4-3]: not recorded any more
    await eventually(() => polite.closed, 2000, 'polite closed');
    let recorded = 0;
    for (let i = 0; i < 100 && recorded !== 2; i++, await delay(20)) recorded = await willsOf(a);
    assert.equal(recorded, 2, 'the live connections\' wills are recorded in Redis');

    cluster.kill('a');
    await eventually(() => count('a', 'wills/now') === 1, 3000, 'the will without delay');
    assert.equal(count('a', 'wills/later'), 0, 'not before its Will Delay');
    await eventually(() => count('a', 'wills/later') === 1, 4000, 'the delayed will');
    await delay(300);
    assert.equal(count('a', 'wills/now'), 1, 'published once, by one survivor');
    assert.equal(count('a', 'wills/later'), 1);
    assert.equal(count('a', 'wills/polite'), 0);
    now.destroy();
    later.destroy();
  });

  it('the will is not sent when its client connected again on another node before the delay ran out [MQTT-3.1.3-9]', async () => {
    const b = cluster.nodes[1]!;
    const c = cluster.nodes[2]!;
    const { client } = await RawClient.connect(b.port, {
      protocolVersion: 5,
      clientId: 'w-back',
      clean: false,
      properties: { sessionExpiryInterval: 60 },
      will: { topic: 'wills/back', payload: Buffer.from('b'), qos: 0, retain: false, properties: { willDelayInterval: 1 } },
    });
    const { client: other } = await RawClient.connect(b.port, {
      protocolVersion: 5,
      clientId: 'w-gone',
      properties: { sessionExpiryInterval: 60 },
      will: { topic: 'wills/gone', payload: Buffer.from('g'), qos: 0, retain: false, properties: { willDelayInterval: 1 } },
    });
    let recorded = 0;
    for (let i = 0; i < 100 && recorded !== 2; i++, await delay(20)) recorded = await willsOf(b);
    assert.equal(recorded, 2);
    cluster.kill('b');
    const { client: back, connack } = await RawClient.connect(c.port, { protocolVersion: 5, clientId: 'w-back', clean: false, properties: { sessionExpiryInterval: 60 } });
    assert.equal(connack.reasonCode, 0);
    await eventually(() => count('b', 'wills/gone') === 1, 4000, 'the will of the client that did not come back');
    await delay(500);
    assert.equal(count('b', 'wills/back'), 0, 'the client came back first: no will');
    for (const x of [client, other, back]) x.destroy();
  });
});
