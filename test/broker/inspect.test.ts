// The inspection API: what it reports for connections, sessions, subscriptions and retained messages.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createBroker } from '../../src/index.js';
import { FakeCore } from '../helpers/fake-core.js';
import { BrokerInspector } from '../../src/broker/inspect.js';

test('inspect: connections, sessions and subscriptions as plain views', () => {
  const f = new FakeCore();
  const inspect = new BrokerInspector(f.core);
  const sub = f.connect({ clientId: 'sub', clean: false, keepAlive: 30 });
  sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'a/+', qos: 1 }, { topicFilter: '$share/g/a/b', qos: 0 }] });
  const pub = f.connect({ clientId: 'pub' });
  assert.deepEqual(
    { ...inspect.counts() },
    { connections: 2, connected: 2, sessions: 2, subscriptions: 2, retained: 0, droppedMessages: 0, retainedRefused: 0 },
  );
  const conn = inspect.connection('sub')!;
  assert.equal(conn.keepAlive, 30);
  assert.equal(conn.protocolVersion, 4);
  assert.equal(inspect.connection('nobody'), undefined);
  assert.deepEqual([...inspect.connections()].map((c) => c.clientId).sort(), ['pub', 'sub']);
  assert.deepEqual(inspect.subscribers('a/b').sort(), ['sub']);
  const view = inspect.session('sub')!;
  assert.equal(view.connected, true);
  assert.deepEqual(view.subscriptions.map((s) => [s.topicFilter, s.qos, s.shareGroup]), [['a/+', 1, undefined], ['$share/g/a/b', 0, 'g']]);
  sub.drop();
  pub.send({ type: 3, topic: 'a/x', payload: Buffer.from('m'), qos: 1, packetId: 7, retain: true, dup: false });
  const offline = inspect.session('sub')!;
  assert.equal(offline.connected, false);
  assert.equal(offline.queued, 1, 'the QoS 1 message waits for the offline session');
  assert.equal(offline.queuedBytes, 1);
  assert.ok(offline.expiresAt !== undefined);
  assert.equal(inspect.retained('a/x')?.payload.toString(), 'm');
  assert.deepEqual(inspect.retainedMatching('a/#').map((m) => m.topic), ['a/x']);
  assert.equal(inspect.isConnected('sub'), false);
  assert.equal(inspect.hasSession('sub'), true);
});

test('Broker.deleteSession and deleteRetained', async () => {
  const broker = createBroker({ port: 0, host: '127.0.0.1' });
  broker.publish('keep/x', 'v', { retain: true });
  assert.equal(broker.inspect.counts().retained, 1);
  assert.equal(broker.deleteRetained('keep/x'), true);
  assert.equal(broker.deleteRetained('keep/x'), false);
  assert.equal(broker.inspect.counts().retained, 0);
  assert.equal(broker.deleteSession('nobody'), false);
  await broker.close();
});
