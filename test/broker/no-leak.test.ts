// Connections that come and go leave nothing behind in the core: no channel, session, subscription or timer.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { startBroker } from '../helpers/broker.js';
import { eventually } from '../helpers/wait.js';
import { RawClient } from '../helpers/raw-client.js';

it('500 clean clients that subscribe, publish and leave (half DISCONNECT, half drop) leave the core empty', async (t) => {
  const { broker, port } = await startBroker();
  t.after(() => broker.close());
  const clients: RawClient[] = [];
  for (let i = 0; i < 500; i++) {
    const { client } = await RawClient.connect(port, { clientId: `leak-${i}`, protocolVersion: i % 2 ? 5 : 4, keepAlive: 30 });
    client.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: `leak/${i}/#`, qos: 1 }] });
    client.send({ type: 3, topic: `leak/${i}/x`, payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 2 });
    clients.push(client);
  }
  await Promise.all(clients.map((c) => c.next(4)));
  assert.equal(broker.inspect.counts().connected, 500);
  assert.equal(broker.inspect.counts().subscriptions, 500);
  clients.forEach((c, i) => (i % 2 ? c.send({ type: 14 }) : c.destroy()));
  await eventually(() => broker.inspect.counts().connections === 0, 5000, 'every channel to close');
  assert.equal(broker.inspect.counts().connected, 0);
  assert.equal(broker.inspect.counts().sessions, 0, 'clean sessions end with their connection');
  assert.equal(broker.inspect.counts().subscriptions, 0, 'their subscriptions are gone');
});

it('a broker event listener that throws is logged, and the publisher and subscriber go on', async (t) => {
  const { broker, port } = await startBroker();
  t.after(() => broker.close());
  broker.on('published', () => {
    throw new Error('listener bug');
  });
  const { client: sub } = await RawClient.connect(port, { clientId: 'sub' });
  t.after(() => sub.destroy());
  sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 't', qos: 1 }] });
  await sub.next(9);
  const { client: pub } = await RawClient.connect(port, { clientId: 'pub' });
  t.after(() => pub.destroy());
  pub.send({ type: 3, topic: 't', payload: Buffer.from('1'), qos: 1, retain: false, dup: false, packetId: 1 });
  await pub.next(4);
  await sub.next(3);
  assert.equal(pub.closed, false, 'the publisher was not disconnected for the listener\'s error');
});
